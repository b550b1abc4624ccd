"""The local executor's cap counts calculations; a freed slot is refilled before the
ended job's results are saved; deadlines and cancels on the one thread (fake children:
tests/unit/core/fake_runs.py; real processes: tests/integration/core/
test_local_executor_processes.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from qforge.record import Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.result import ErrorType
from tests.waiting import wait_until

from .conftest import WATER, water_spec
from .fake_runs import FakeRuns

WAIT = 20.0  # seconds: the bound of every wait below


def _scheduler(store: JobStore, cap: int, **env: str) -> tuple[Scheduler, LocalExecutor]:
    settings = Settings.from_env(env, jobs_dir=store.root, max_concurrent_jobs=cap)
    executor = LocalExecutor(store, settings)
    sched = Scheduler(store, executor, settings, instance="me", writes_after_pass=True)
    sched.start()
    return sched, executor


def test_a_job_saving_its_results_does_not_hold_a_calculation_slot(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a calculation ends, the pass refills its slot first and saves its results
    after: at each save, the job launched in its place already calculates; never more
    than the cap calculate."""
    ends: dict[str, threading.Event] = {}
    runs = FakeRuns(monkeypatch, ends=lambda job_id: ends.setdefault(job_id, threading.Event()))
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(4)]
    sched, executor = _scheduler(store, cap=2)
    holding_at_save: dict[str, set[str]] = {}
    runs.on_save = lambda job_id: holding_at_save.setdefault(job_id, executor.holding())
    most = 0
    try:
        sched.run_once()
        first, second = runs.began
        assert executor.holding() == {first, second} and executor.free_slots() == 0
        ends[first].set()  # its xtb exits
        assert executor.wait_for_ends(WAIT)
        sched.run_once()
        third = runs.began[2]
        assert runs.saved == [first]
        assert holding_at_save[first] == {second, third}  # refilled before the save
        while len(runs.saved) < 4:
            for event in ends.values():
                event.set()
            executor.wait_for_ends(WAIT)
            sched.run_once()
            most = max(most, len(executor.holding()))
    finally:
        sched.shutdown()
    assert most <= 2
    assert sorted(runs.saved) == sorted(ids)
    assert all(store.read(j).status is Status.FAILED for j in ids)


@pytest.mark.parametrize("variable", ["QFORGE_SCRATCH", "WORKDIR"])
def test_xtb_runs_under_the_scratch_root_of_either_name(
        store: JobStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        variable: str) -> None:
    """QFORGE_SCRATCH, or the deprecated WORKDIR, is where the worker's xtb runs."""
    runs = FakeRuns(monkeypatch)
    store.submit(water_spec(), input_text=WATER)
    sched, _ = _scheduler(store, cap=1, **{variable: str(tmp_path / "fast")})
    try:
        sched.run_once()
    finally:
        sched.shutdown()
    assert [c.scratch_root for c in runs.configs] == [tmp_path / "fast"]


def test_the_wait_between_passes_ends_when_a_calculation_ends(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler waits on the calculations themselves: `wait` returns True as soon
    as one has ended (and stays True until a pass reaps and saves it); with nothing
    ended it returns False after its timeout."""
    ends: dict[str, threading.Event] = {}
    runs = FakeRuns(monkeypatch, ends=lambda job_id: ends.setdefault(job_id, threading.Event()))
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, executor = _scheduler(store, cap=1)
    try:
        sched.run_once()
        assert runs.began == [job]
        assert executor.wait_for_ends(0.01) is False and not executor.outcomes_waiting()
        threading.Timer(0.05, ends[job].set).start()
        assert executor.wait_for_ends(WAIT) is True
        assert executor.outcomes_waiting()
        report = sched.run_once()
        assert report.finished == [job] and not executor.outcomes_waiting()
        assert executor.active() == set()
    finally:
        sched.shutdown()
    assert store.read(job).status is Status.FAILED


def test_a_cancel_stops_the_calculation_and_frees_its_slot(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ends: dict[str, threading.Event] = {}
    runs = FakeRuns(monkeypatch, ends=lambda job_id: ends.setdefault(job_id, threading.Event()))
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, executor = _scheduler(store, cap=1)
    try:
        sched.run_once()
        assert executor.cancel(job) is True and executor.cancel("someone-else") is False
        assert ends[job].is_set()  # stopped (SIGTERM to its group)
        assert executor.wait_for_ends(WAIT)
        outcomes = executor.collect()
        assert outcomes == [] and executor.holding() == set() and executor.free_slots() == 1
        assert executor.save_next()
        [outcome] = executor.collect()
        assert outcome.job_id == job and runs.saved == [job]
    finally:
        sched.shutdown()


def test_a_calculation_past_its_deadline_is_stopped(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ends: dict[str, threading.Event] = {}
    FakeRuns(monkeypatch, ends=lambda job_id: ends.setdefault(job_id, threading.Event()))
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=1)
    executor = LocalExecutor(store, settings)
    store.submit(water_spec(timeout=0.05), input_text=WATER)
    sched = Scheduler(store, executor, settings, instance="me")
    sched.start()
    try:
        sched.run_once()
        [job] = ends
        run = executor._runs[job]
        run.deadline = run.calc.child.started + 0.05 if run.calc.child else None
        assert executor.wait_for_ends(WAIT)  # the wait is cut to the deadline, then SIGTERM
        assert ends[job].is_set() and run.timed_out
        executor.collect()
        assert executor.save_next()
    finally:
        sched.shutdown()


def test_shutdown_stops_calculations_and_gives_them_back(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ends: dict[str, threading.Event] = {}
    FakeRuns(monkeypatch, ends=lambda job_id: ends.setdefault(job_id, threading.Event()))
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, executor = _scheduler(store, cap=1)
    sched.run_once()
    assert executor.holding() == {job}
    sched.shutdown()
    assert ends[job].is_set()
    record = store.read(job)
    assert record.status is Status.QUEUED
    assert store.queue.running_markers() == []


def test_a_run_that_could_not_start_frees_its_slot_at_once(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """`begin` gave no child (no xtb, no scratch folder): the run has ended; its
    report is saved by the same pass."""
    runs = FakeRuns(monkeypatch)
    original = runs.begin

    def no_child(*args: object, **kw: object) -> object:
        calc = original(*args, **kw)  # type: ignore[arg-type]
        calc.child = None
        return calc

    monkeypatch.setattr("qforge.scheduling.local.begin", no_child)
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, executor = _scheduler(store, cap=1)
    try:
        report = sched.run_once()
    finally:
        sched.shutdown()
    assert report.launched == [job] and report.finished == [job]
    record = store.read(job)
    assert record.status is Status.FAILED and record.error is not None
    assert record.error.type is ErrorType.xtb_error
    wait_until(lambda: not executor.active(), WAIT, "nothing active")
