"""The local executor's cap counts calculations; saving results overlaps the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qforge.record import Status
from qforge.scheduling import local
from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.harness import RunConfig
from qforge_runner.result import ErrorType, JobError, RunReport
from tests.waiting import wait_until

from .conftest import WATER, water_spec


class FakeHarness:
    """Stands in for run_job: a 'calculation' phase, then a slow 'save' phase."""

    def __init__(self, save_gate: threading.Event) -> None:
        self.lock = threading.Lock()
        self.calculating = 0
        self.max_calculating = 0
        self.saving = 0
        self.overlapped = False
        self.save_gate = save_gate

    def __call__(self, job_dir: Path, spec: Any, config: RunConfig, *,
                 job_id: str | None = None) -> RunReport:
        with self.lock:
            self.calculating += 1
            self.max_calculating = max(self.max_calculating, self.calculating)
            if self.saving:
                self.overlapped = True
        time.sleep(0.01)
        with self.lock:
            self.calculating -= 1
            self.saving += 1
        assert config.on_calculation_end is not None
        config.on_calculation_end()
        self.save_gate.wait(10)  # saving is slow until the test lets it go
        with self.lock:
            self.saving -= 1
        return RunReport(success=False, result=None,
                         error=JobError(type=ErrorType.xtb_error, message="fake"),
                         job_id=job_id, started_at="t", finished_at="t")


def test_a_job_saving_its_results_does_not_hold_a_calculation_slot(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    fake = FakeHarness(gate)
    monkeypatch.setattr(local, "run_job", fake)
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(4)]
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=2)
    executor = LocalExecutor(store, settings)
    sched = Scheduler(store, executor, settings, instance="me")
    sched.start()

    def passes_until(done: Callable[[], bool]) -> Callable[[], bool]:
        def probe() -> bool:
            sched.run_once()
            return done()
        return probe

    # Two jobs calculate, end, and hang in 'save': their slots are free again, so the
    # next two start while the first two are still saving.
    wait_until(passes_until(lambda: len(executor.active()) >= 4), 30, "four jobs active",
               interval=0.02)
    assert len(executor.active()) == 4
    assert fake.overlapped
    assert fake.max_calculating <= 2
    gate.set()
    wait_until(passes_until(lambda: not executor.active()), 30, "every job collected",
               interval=0.02)
    sched.shutdown()
    assert all(store.read(j).status is Status.FAILED for j in ids)


@pytest.mark.parametrize("variable", ["QFORGE_SCRATCH", "WORKDIR"])
def test_xtb_runs_under_the_scratch_root_of_either_name(
        store: JobStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        variable: str) -> None:
    """QFORGE_SCRATCH, or the deprecated WORKDIR, is where the worker's xtb runs."""
    roots: list[Path | None] = []

    def fake(job_dir: Path, spec: Any, config: RunConfig, *,
             job_id: str | None = None) -> RunReport:
        roots.append(config.scratch_root)
        assert config.on_calculation_end is not None
        config.on_calculation_end()
        return RunReport(success=False, result=None,
                         error=JobError(type=ErrorType.xtb_error, message="fake"),
                         job_id=job_id, started_at="t", finished_at="t")

    monkeypatch.setattr(local, "run_job", fake)
    store.submit(water_spec(), input_text=WATER)
    settings = Settings.from_env({variable: str(tmp_path / "fast")}, jobs_dir=store.root)
    sched = Scheduler(store, LocalExecutor(store, settings), settings, instance="me")
    sched.start()
    def launched() -> bool:
        sched.run_once()
        return bool(roots)

    try:
        wait_until(launched, 30, "the job launched", interval=0.02)
    finally:
        sched.shutdown()
    assert roots == [tmp_path / "fast"]


def test_an_outcome_saved_while_another_job_calculates_waits_for_the_next_pass(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass per job: a job whose results are saved while another calculates does
    not wake the scheduler (the other's end will, or the scheduler's look every
    WATCH_EVERY: `outcomes_waiting`); the last one to end, with nothing calculating,
    does."""
    gates = {"quick": threading.Event(), "slow": threading.Event()}
    gates["quick"].set()

    def fake(job_dir: Path, spec: Any, config: RunConfig, *,
             job_id: str | None = None) -> RunReport:
        assert job_id is not None
        gates[names[job_id]].wait(30)  # 'calculating' until the test lets it go
        assert config.on_calculation_end is not None
        config.on_calculation_end()
        return RunReport(success=False, result=None,
                         error=JobError(type=ErrorType.xtb_error, message="fake"),
                         job_id=job_id, started_at="t", finished_at="t")

    monkeypatch.setattr(local, "run_job", fake)
    slow = store.submit(water_spec(), input_text=WATER).job_id
    quick = store.submit(water_spec(), input_text=WATER).job_id
    names = {slow: "slow", quick: "quick"}
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=2)
    executor = LocalExecutor(store, settings)
    sched = Scheduler(store, executor, settings, instance="me")
    sched.start()
    try:
        sched.run_once()
        assert executor.active() == {slow, quick}
        wait_until(executor.outcomes_waiting, 30, "the quick job's outcome")
        sched.wake.clear()  # set by the quick job's calculation end
        assert executor.holding() == {slow}
        assert not sched.wake.is_set()  # its saved results did not wake the scheduler
        assert [o.job_id for o in executor.collect()] == [quick]
        assert not executor.outcomes_waiting()
        gates["slow"].set()
        wait_until(executor.outcomes_waiting, 30, "the slow job's outcome")
        assert sched.wake.is_set()  # nothing calculates: woken at once
        assert [o.job_id for o in executor.collect()] == [slow]
    finally:
        sched.shutdown()
