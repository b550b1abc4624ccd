"""Record writes behind the pass: in order, all of them, and never in the pass's way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from qforge.record import JobRecord, Status
from qforge.scheduling import local
from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.scheduling.recorder import Inline, WriteBehind
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge.store.listings import Listings
from qforge.store.queue import Queue
from qforge_runner.harness import RunConfig
from qforge_runner.result import ErrorType, JobError, RunReport
from tests.waiting import wait_until

from .conftest import WATER, water_spec

WAIT = 20.0  # seconds: the bound of every wait below


def test_writes_run_in_the_order_they_were_asked_for() -> None:
    idle = threading.Event()
    writes = WriteBehind(on_idle=idle.set)
    done: list[int] = []
    gate = threading.Event()
    writes.submit(lambda: gate.wait(WAIT))
    for i in range(50):
        writes.submit(lambda i=i: done.append(i))  # type: ignore[misc]
    assert writes.pending() == 51 and not idle.is_set()
    gate.set()
    assert writes.drain(WAIT)
    assert done == list(range(50)) and writes.pending() == 0
    assert idle.wait(WAIT)
    writes.close()


def test_a_write_with_a_bug_is_logged_and_the_next_ones_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    writes = WriteBehind()
    done: list[str] = []

    def broken() -> None:
        raise ValueError("a bug in one job's write")

    writes.submit(broken)
    writes.submit(lambda: done.append("after"))
    writes.close(timeout=10)
    assert done == ["after"]
    assert "A record write failed" in caplog.text


def test_a_write_the_store_refuses_is_retried_in_order_until_it_is_taken() -> None:
    """A full or read-only store: the refused write is tried again, and the writes
    behind it wait for it (a RUNNING record never lands after the terminal one)."""
    errors: list[OSError] = []
    writes = WriteBehind(on_store_error=errors.append, retry_seconds=0.01)
    done: list[str] = []
    refusals = iter([True, True, True, False])

    def running_record() -> None:
        if next(refusals):
            raise OSError(28, "No space left on device")
        done.append("RUNNING")

    writes.submit(running_record)
    writes.submit(lambda: done.append("COMPLETED"))
    assert writes.drain(timeout=10)
    writes.close(timeout=10)
    assert done == ["RUNNING", "COMPLETED"]
    assert [e.errno for e in errors] == [28, 28, 28]


def test_close_gives_up_a_write_the_store_never_takes(
        caplog: pytest.LogCaptureFixture) -> None:
    writes = WriteBehind(retry_seconds=0.01)

    def refused() -> None:
        raise OSError(30, "Read-only file system")

    writes.submit(refused)
    writes.close(timeout=0.2)  # bounded: a worker stopping on a read-only store exits
    assert "Giving up 1 record writes" in caplog.text


def test_inline_raises_a_store_error_to_its_caller() -> None:
    def refused() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        Inline().submit(refused)


def test_inline_writes_happen_at_once() -> None:
    done: list[int] = []
    writes = Inline()
    writes.submit(lambda: done.append(1))
    assert done == [1] and writes.pending() == 0 and writes.drain(0)


class GatedQueue(Queue):
    """A queue whose durable writes of terminal records wait for a gate: a disk that
    takes its time."""

    def __init__(self, store: JobStore, gate: threading.Event) -> None:
        super().__init__(store.layout, store._records, Listings())
        self.gate = gate
        self.blocked = threading.Event()

    def finish(self, claimed: Claimed, record: JobRecord) -> None:
        self.blocked.set()
        self.gate.wait(WAIT)
        super().finish(claimed, record)


class GatedStore(JobStore):
    """A store whose queue is a GatedQueue."""

    def __init__(self, root: Path, gate: threading.Event) -> None:
        super().__init__(root)
        self.queue = self.gated = GatedQueue(self, gate)
        self.blocked = self.gated.blocked


def quick_harness(job_dir: Path, spec: Any, config: RunConfig, *,
                  job_id: str | None = None) -> RunReport:
    """run_job's stand-in: the calculation ends at once."""
    assert config.on_calculation_end is not None
    config.on_calculation_end()
    return RunReport(success=False, result=None,
                     error=JobError(type=ErrorType.xtb_error, message="fake"),
                     job_id=job_id, started_at="t", finished_at="t")


def _worker(store: JobStore, cap: int) -> tuple[Scheduler, LocalExecutor]:
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=cap)
    executor = LocalExecutor(store, settings)
    sched = Scheduler(store, executor, settings, instance="me", write_behind=True)
    sched.start()
    return sched, executor


def test_a_freed_slot_is_refilled_while_the_last_jobs_record_is_still_being_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the record written inline the pass would sit in the slow write and the
    second job would wait for the disk; behind the pass, it starts at once."""
    monkeypatch.setattr(local, "run_job", quick_harness)
    gate = threading.Event()
    store = GatedStore(tmp_path / "jobs", gate)
    store.ensure()
    first, second = (store.submit(water_spec(), input_text=WATER).job_id for _ in range(2))
    sched, executor = _worker(store, cap=1)
    launched: list[str] = []
    launch = executor.launch
    monkeypatch.setattr(executor, "launch",
                        lambda c: (launched.append(c.record.job_id), launch(c)))
    try:
        def both_launched() -> bool:
            sched.run_once()
            return len(launched) >= 2

        wait_until(both_launched, WAIT, "both jobs launched", interval=0.005)
        assert launched == [first, second]
        # The first job's terminal record is stuck on the 'disk' (the gate stays shut
        # until the end), yet the second job was launched.
        assert store.blocked.wait(WAIT)
        assert store.read(first).status is Status.RUNNING
    finally:
        gate.set()
        sched.shutdown()
    assert store.read(first).status is Status.FAILED
    assert store.read(second).status is Status.FAILED


def test_until_idle_exits_only_once_every_record_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "run_job", quick_harness)
    gate = threading.Event()
    store = GatedStore(tmp_path / "jobs", gate)
    store.ensure()
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(3)]
    sched, _ = _worker(store, cap=2)
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,), kwargs={"until_idle": True})
    runner.start()
    try:
        assert store.blocked.wait(WAIT)
        runner.join(0.3)
        assert runner.is_alive(), "the worker called itself idle with a record unwritten"
    finally:
        gate.set()
        runner.join(WAIT)
        stop.set()
        sched.shutdown()
    assert not runner.is_alive()
    assert [store.read(j).status for j in ids] == [Status.FAILED] * 3
    assert store.queue.running_markers() == []


def test_a_worker_that_dies_before_writing_running_loses_no_job(store: JobStore) -> None:
    """Behind the pass, xtb may start before the RUNNING record is on disk. A worker
    killed in between leaves the record QUEUED under its running marker; once its
    lease is over another worker puts the job back in the queue and runs it."""
    job = store.submit(water_spec(), input_text=WATER).job_id
    settings = Settings.from_env({}, jobs_dir=store.root, lease_seconds=60)
    key = next(k for k in store.queue.queued() if k.job_id == job)
    placement = Scheduler(store, LocalExecutor(store, settings), settings,
                          instance="dead")._placement()
    assert store.queue.claim(key, "dead", placement, write=False) is not None
    assert store.read(job).status is Status.QUEUED and store.queue.queued() == []

    now = [1000.0]
    launched: list[str] = []

    class Recording(LocalExecutor):
        def launch(self, claimed: Claimed) -> None:
            launched.append(claimed.record.job_id)

    sched = Scheduler(store, Recording(store, settings), settings, instance="alive",
                      clock=lambda: now[0], write_behind=True)
    sched.start()
    sched.run_once()  # the dead worker's marker is seen for the first time
    now[0] += 61
    report = sched.run_once()
    sched.writes.drain(WAIT)
    assert report.recovered == [] and launched == [job]  # its queue marker was back
    assert store.read(job).status is Status.RUNNING
