"""Several processes claiming from one store: every job is claimed exactly once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from qforge.record import Placement, Status
from qforge.store.jobstore import JobStore

from .conftest import WATER, water_spec


def _claim_all(root: str, instance: str, gate: object, out: mp.Queue  # type: ignore[type-arg]
               ) -> None:
    store = JobStore(root)
    gate.wait(60)  # type: ignore[attr-defined]  # all start claiming at once
    here = Placement(executor="local", worker_id=instance, instance=instance)
    won = []
    for _ in range(3):  # several passes, as a worker polls
        for key in store.queue.queued():
            claimed = store.queue.claim(key, instance, here)
            if claimed is not None:
                won.append(claimed.record.job_id)
    out.put((instance, won))


def test_concurrent_claims_never_give_one_job_to_two_processes(store: JobStore) -> None:
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(200)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    gate = ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_all, args=(str(store.root), f"w{i}", gate, out))
             for i in range(4)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    claimed = [job for won in results.values() for job in won]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    owners = {job: inst for inst, won in results.items() for job in won}
    for job_id in ids:
        record = store.read(job_id)
        assert record.status is Status.RUNNING and record.attempts == 1
        assert record.placement is not None and record.placement.instance == owners[job_id]
    assert len(list(Path(store.layout.running).iterdir())) == len(ids)
