"""Store files corrupted at random (issue 12, point 3): metadata.json of jobs in every
state, queue and running markers, heartbeats, stray files in the index folders.

The scheduling core is the real one over a real store folder; only the executor is the
test double of test_scheduler.py (every launched job succeeds at the next pass). After
the damage the scheduler must keep going (no pass raises), every job whose own record
was not damaged must end COMPLETED, and every unfinished job whose record is unreadable
must be named in an ERROR log line; nothing may stay claimed.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qforge.record import Status
from qforge.scheduling.core import Scheduler
from qforge.settings import Settings
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore

from .conftest import WATER, water_spec
from .test_scheduler import Clock, FakeExecutor, success

N_JOBS = 6
LEASE = 10.0


@dataclass(frozen=True)
class Damage:
    target: str  # metadata | queue_marker | running_marker | heartbeat | stray
    index: int  # which job (or file) of its kind
    how: str  # garbage | truncate | flip | delete | empty
    data: bytes
    at: int


damages = st.builds(
    Damage,
    target=st.sampled_from(["metadata", "queue_marker", "running_marker", "heartbeat",
                            "stray"]),
    index=st.integers(0, N_JOBS - 1),
    how=st.sampled_from(["garbage", "truncate", "flip", "delete", "empty"]),
    data=st.binary(min_size=1, max_size=64),
    at=st.integers(0, 10_000),
)


def _mangle(path: Path, d: Damage) -> None:
    if d.how == "delete":
        path.unlink(missing_ok=True)
        return
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    if d.how == "garbage":
        raw = d.data
    elif d.how == "truncate":
        raw = raw[: d.at % max(1, len(raw))]
    elif d.how == "flip" and raw:
        i = d.at % len(raw)
        raw = raw[:i] + bytes([raw[i] ^ (d.data[0] or 1)]) + raw[i + 1:]
    elif d.how == "empty":
        raw = b""
    path.write_bytes(raw)


def _settings(store: JobStore) -> Settings:
    return Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=3,
                             lease_seconds=LEASE, max_attempts=50,
                             index_sync_seconds=3 * LEASE)


def _scene(root: Path) -> tuple[JobStore, Scheduler, FakeExecutor, Clock, list[str]]:
    """Six jobs: one COMPLETED, three RUNNING here, one RUNNING on a worker that then
    died, one QUEUED."""
    store = JobStore(root)
    store.ensure()
    ids = [store.submit(water_spec(name=f"j{i}"), input_text=WATER).job_id
           for i in range(N_JOBS)]
    clock = Clock()
    dead_ex = FakeExecutor(1)
    dead = Scheduler(store, dead_ex, _settings(store), instance="dead-worker", clock=clock)
    dead.start()
    dead.run_once()  # claims the first job, then never beats again
    ex = FakeExecutor(3)
    sched = Scheduler(store, ex, _settings(store), instance="me", clock=clock)
    sched.start()
    sched.run_once()
    first = sorted(ex.running)[0]
    ex.finish(success(first))
    sched.run_once()  # one COMPLETED, its slot refilled
    return store, sched, ex, clock, ids


def _apply(store: JobStore, ids: list[str], d: Damage) -> str | None:
    """Damage one file; returns the job whose own record was hit, if any."""
    layout = store.layout
    job_id = ids[d.index]
    if d.target == "metadata":
        _mangle(layout.metadata(job_id), d)
        return job_id
    if d.target == "queue_marker":
        for name in os.listdir(layout.queue):
            if name.endswith(job_id):
                _mangle(layout.queue / name, d)
    elif d.target == "running_marker":
        for name in os.listdir(layout.running):
            if name.startswith(f"{job_id}+"):
                _mangle(layout.running / name, d)
    elif d.target == "heartbeat":
        for name in sorted(os.listdir(layout.workers))[d.index % 2:][:1]:
            _mangle(layout.workers / name, d)
    else:  # stray files where only markers belong
        folder = (layout.queue, layout.running, layout.workers)[d.index % 3]
        name = d.data.decode("ascii", "replace").replace("/", "_").replace("\0", "_")
        name = name.strip(".") or "x"
        (folder / name[:60]).write_bytes(d.data)
    return None


def _readable(store: JobStore, job_id: str) -> bool:
    try:
        store.read(job_id)
    except (CorruptRecord, JobNotFound):
        return False
    return True


@pytest.fixture(scope="module")
def fast_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stores on a tmpfs when there is one: fsync is free there, and the property is
    about what the scheduler does with the bytes, not about the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="qforge-corrupt-", dir=shm))
    return tmp_path_factory.mktemp("corrupt")


_COUNTER = itertools.count()


@given(st.lists(damages, min_size=1, max_size=4), st.booleans())
def test_damaged_store_files_stop_nothing_but_their_own_job(
        fast_tmp: Path, damage: list[Damage], restart: bool) -> None:
    root = fast_tmp / f"jobs{next(_COUNTER)}"
    try:
        _check(root, damage, restart)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check(root: Path, damage: list[Damage], restart: bool) -> None:
    store, sched, ex, clock, ids = _scene(root)
    # a finished job's record is never read again by a scheduler (its done marker
    # indexes it): damage there is for `qforge show` to report, not for the loop
    finished = {j for j in ids if store.read(j).status.terminal}
    hit = {j for d in damage if (j := _apply(store, ids, d)) is not None}

    errors: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    catch = Catch()
    logging.getLogger("qforge").addHandler(catch)
    try:
        if restart:  # the damage is found by a scheduler starting on it
            ex = FakeExecutor(3)
            sched = Scheduler(store, ex, _settings(store), instance="me-again", clock=clock)
            sched.start()
        for _ in range(12):  # passes over 6 leases: every recovery and rebuild is due
            for job_id in sorted(ex.running):
                ex.finish(success(job_id))
            sched.run_once()  # must not raise, whatever the damage
            clock.now += LEASE / 2
    finally:
        logging.getLogger("qforge").removeHandler(catch)

    for job_id in ids:
        if _readable(store, job_id):
            record = store.read(job_id)
            # undamaged (or damaged into another valid record): it finished
            assert record.status is Status.COMPLETED, (job_id, record.status, damage)
        else:
            assert job_id in hit, job_id
            if job_id not in finished:
                assert any(job_id in e for e in errors), (job_id, errors)
    # nothing left claimed, nothing of a readable job left queued
    assert [n for n in os.listdir(store.layout.running) if "+" in n
            and n.split("+")[0] in ids] == []
    assert [k for k in store.queue.queued() if _readable(store, k.job_id)] == []
