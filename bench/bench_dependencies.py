"""Benchmark: a scheduler pass with 10,000 jobs waiting for others vs with none.

Two stores side by side in one temporary folder:
  none     the parents only: --parents QUEUED jobs (default 1,000);
  waiting  the same parents, and --waiting follow-ups (default 10,000) waiting for them
           (one parent each, round robin): records as `JobStore.submit_follow_up`
           writes them, with their waiting markers and edges (qforge.store.waiting).
Each store gets a `Scheduler` with an executor that is always full (bench_store's), so
`run_once()` does a whole pass — index refresh, outcomes, cancel requests, the settle
listing, dead-worker check, queue listing, heartbeat — and claims nothing. The passes
of the two stores are interleaved and the median of many is reported; the target is a
ratio of at most 1.2 (the queue stays O(queued): waiting jobs are not in it). The
start-up index sync of the waiting store is timed too (it reads no record of a waiting
job: they are indexed).

Knobs: --parents, --waiting, --reps, --dir (or QFORGE_BENCH_DIR).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench_store import IdleExecutor, interleaved
from benchlib import MOLECULES, log, ms, scratch_dir, timed, write_file, write_queued_job

from qforge.record import JobRecord, Status
from qforge.scheduling.core import Scheduler
from qforge.settings import Settings
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge.store.listings import MTIME_MARGIN
from qforge.store.waiting import waiting_reason
from qforge_runner.spec import Task

TARGET = 1.2
CREATED = "2026-12-07T08:00:00.000000Z"


def build(root: Path, parents: int, waiting: int) -> None:
    store = JobStore(root)
    store.ensure()
    spec = JobSpec(molecule=MOLECULES["water"], task=Task.opt)
    ids = [f"parent{i:08d}" for i in range(parents)]
    for i, job_id in enumerate(ids):
        write_queued_job(store, job_id, spec, created_ns=1_000_000 + i, created_at=CREATED)
    hess = spec.model_copy(update={"task": Task.hess})
    text = hess.molecule.to_xyz().encode()
    for n in range(waiting):
        parent = ids[n % parents]
        record = JobRecord(job_id=f"child{n:08d}", status=Status.QUEUED, created_at=CREATED,
                           updated_at=CREATED, created_ns=2_000_000 + n, spec=hess,
                           depends_on=(parent,), molecule=parent,
                           waiting_reason=waiting_reason([parent]))
        folder = store.layout.job_dir(record.job_id)
        os.mkdir(folder)
        write_file(folder / "input.xyz", text)
        write_file(folder / "metadata.json",
                   (record.model_dump_json(indent=2) + "\n").encode())
        for marker in store.waiting.edge_paths(record):
            Path(marker).parent.mkdir(parents=True, exist_ok=True)
            write_file(Path(marker), b"")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parents", type=int, default=1_000)
    p.add_argument("--waiting", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=2_000)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    with scratch_dir("qforge-bench-deps-", args.dir) as tmp:
        sizes = {"none": 0, "waiting": args.waiting}
        for name, waiting in sizes.items():
            took = timed(lambda n=name, w=waiting: build(tmp / n, args.parents, w))
            log(f"built store {name!r}: {args.parents} queued + {waiting} waiting "
                f"in {took:.1f} s")
        schedulers: dict[str, Scheduler] = {}
        sync_read = 0
        startup = 0.0
        for name in sizes:
            store = JobStore(tmp / name)
            sched = Scheduler(store, IdleExecutor(), Settings(jobs_dir=tmp / name,
                                                              worker_id="bench"))
            took = timed(sched.start)
            log(f"{name}: Scheduler.start() (start-up index sync) {ms(took)}")
            if name == "waiting":
                startup, sync_read = took, sched.index.sync().read
            schedulers[name] = sched
        time.sleep(MTIME_MARGIN + 0.1)  # as bench_store: listings trusted after the margin
        for name, sched in schedulers.items():
            for _ in range(20):
                report = sched.run_once()
            if report.queued != args.parents or report.launched:
                raise SystemExit(f"bench_dependencies: {name}: a pass saw {report.queued} "
                                 f"queued (expected {args.parents})")
        counts = schedulers["waiting"].store.queries.counts()
        waiting = schedulers["waiting"].store.queries.waiting()
        if waiting != args.waiting or counts[Status.QUEUED] != args.parents + args.waiting:
            raise SystemExit(f"bench_dependencies: {waiting} waiting, counts {counts}")
        med = interleaved(schedulers, args.reps)
        for name in sizes:
            log(f"{name}: Scheduler.run_once() median {ms(med[name])} over {args.reps}")
        for sched in schedulers.values():
            sched.shutdown()
    ratio = med["waiting"] / med["none"]
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"bench: scheduler pass with {args.waiting} waiting dependents + {args.parents} "
          f"queued: {ms(med['waiting'])} vs none waiting {ms(med['none'])} "
          f"(ratio {ratio:.2f}, target <= {TARGET}, {verdict}); start-up index sync "
          f"{ms(startup)} ({sync_read} records read)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
