"""Record writes after the pass: in order, all of them, and never in a freed slot's way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from qforge.record import JobRecord, Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.scheduling.recorder import AfterPass, Inline
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge.store.listings import Listings
from qforge.store.queue import Queue
from tests.waiting import wait_until

from .conftest import WATER, water_spec
from .fake_runs import FakeRuns

WAIT = 20.0  # seconds: the bound of every wait below


def test_writes_wait_for_the_flush_and_run_in_the_order_they_were_asked_for() -> None:
    writes = AfterPass()
    done: list[int] = []
    for i in range(50):
        writes.submit(lambda i=i: done.append(i))  # type: ignore[misc]
    assert writes.pending() == 50 and done == []
    assert writes.flush()
    assert done == list(range(50)) and writes.pending() == 0


def test_a_write_with_a_bug_is_logged_and_the_next_ones_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    writes = AfterPass()
    done: list[str] = []

    def broken() -> None:
        raise ValueError("a bug in one job's write")

    writes.submit(broken)
    writes.submit(lambda: done.append("after"))
    writes.close(timeout=10)
    assert done == ["after"]
    assert "A record write failed" in caplog.text


def test_a_write_the_store_refuses_is_retried_in_order_until_it_is_taken() -> None:
    """A full or read-only store: the refused write is tried again at the next flush,
    and the writes behind it wait for it (a RUNNING record never lands after the
    terminal one)."""
    errors: list[OSError] = []
    writes = AfterPass(on_store_error=errors.append, retry_seconds=0.01)
    done: list[str] = []
    refusals = iter([True, True, True, False])

    def running_record() -> None:
        if next(refusals):
            raise OSError(28, "No space left on device")
        done.append("RUNNING")

    writes.submit(running_record)
    writes.submit(lambda: done.append("COMPLETED"))
    assert not writes.flush() and writes.pending() == 2 and done == []
    writes.close(timeout=10)
    assert done == ["RUNNING", "COMPLETED"] and writes.pending() == 0
    assert [e.errno for e in errors] == [28, 28, 28]


def test_close_gives_up_a_write_the_store_never_takes(
        caplog: pytest.LogCaptureFixture) -> None:
    writes = AfterPass(retry_seconds=0.01)

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
    assert done == [1] and writes.pending() == 0 and writes.flush()


class RecordingQueue(Queue):
    """A queue that notes when each terminal record is written (`events`), and refuses
    the first `refusals` of those writes as a full disk would."""

    def __init__(self, store: JobStore, events: list[str], refusals: int = 0) -> None:
        super().__init__(store.layout, store._records, Listings())
        self.events = events
        self.refusals = refusals

    def finish(self, claimed: Claimed, record: JobRecord) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise OSError(28, "No space left on device")
        super().finish(claimed, record)
        self.events.append(f"recorded {record.job_id}")


class RecordingStore(JobStore):
    def __init__(self, root: Path, refusals: int = 0) -> None:
        super().__init__(root)
        self.events: list[str] = []
        self.queue = RecordingQueue(self, self.events, refusals)


def _worker(store: JobStore, cap: int, **env: str) -> tuple[Scheduler, LocalExecutor]:
    settings = Settings.from_env(env, jobs_dir=store.root, max_concurrent_jobs=cap)
    executor = LocalExecutor(store, settings)
    sched = Scheduler(store, executor, settings, instance="me", writes_after_pass=True)
    sched.start()
    return sched, executor


def test_a_freed_slot_is_refilled_before_the_last_jobs_record_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the record written inline the pass would write it before it launched the
    next job, and the slot would wait for the disk; after the pass, the next job starts
    first."""
    FakeRuns(monkeypatch)
    store = RecordingStore(tmp_path / "jobs")
    store.ensure()
    first, second = (store.submit(water_spec(), input_text=WATER).job_id for _ in range(2))
    sched, executor = _worker(store, cap=1)
    launch = executor.launch
    monkeypatch.setattr(executor, "launch", lambda c: (
        store.events.append(f"launched {c.record.job_id}"), launch(c)))
    try:
        def both_recorded() -> bool:
            sched.run_once()
            return len([e for e in store.events if e.startswith("recorded")]) >= 2

        wait_until(both_recorded, WAIT, "both jobs recorded", interval=0.005)
    finally:
        sched.shutdown()
    assert store.events.index(f"launched {second}") < store.events.index(f"recorded {first}")
    assert store.read(first).status is Status.FAILED
    assert store.read(second).status is Status.FAILED


def test_until_idle_exits_only_once_every_record_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that refuses the terminal writes for a while (a full disk): the worker
    keeps them and retries; `--until-idle` does not exit before they are all on disk."""
    FakeRuns(monkeypatch)
    store = RecordingStore(tmp_path / "jobs", refusals=5)
    store.ensure()
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(3)]
    sched, _ = _worker(store, cap=2, POLL_INTERVAL="0.05")
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,), kwargs={"until_idle": True})
    runner.start()
    try:
        runner.join(WAIT)
        assert not runner.is_alive()
    finally:
        stop.set()
        runner.join(WAIT)
        sched.shutdown()
    assert sched.store_errors >= 5
    assert [store.read(j).status for j in ids] == [Status.FAILED] * 3
    assert store.queue.running_markers() == []


def test_a_worker_that_dies_before_writing_running_loses_no_job(store: JobStore) -> None:
    """After the pass, xtb may start before the RUNNING record is on disk. A worker
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
                      clock=lambda: now[0], writes_after_pass=True)
    sched.start()
    sched.run_once()  # the dead worker's marker is seen for the first time
    now[0] += 61
    report = sched.run_once()  # its RUNNING record is written at the end of the pass
    assert report.recovered == [] and launched == [job]  # its queue marker was back
    assert store.read(job).status is Status.RUNNING
