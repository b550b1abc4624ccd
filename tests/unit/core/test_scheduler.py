from __future__ import annotations

import logging
import threading

import pytest

from qforge.record import Status
from qforge.scheduling.core import PassReport, Scheduler
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.result import ErrorType, JobError, JobResult, Quality, RunReport
from qforge_runner.timestamps import utcnow

from .conftest import WATER, water_spec


class FakeExecutor:
    """Records launches; outcomes are injected by the test."""

    kind = "local"
    others_may_recover = True

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.launched: list[str] = []
        self.running: set[str] = set()
        self.saving: set[str] = set()  # calculation ended, outcome not yet reported
        self.cancelled: list[str] = []
        self.pending: list[Outcome] = []
        self.pending_updates: list[Update] = []
        self.can_adopt = False

    def attach(self, wake: threading.Event) -> None:
        self.wake = wake

    def free_slots(self) -> int:
        return self.cap - len(self.running)

    def launch(self, claimed: Claimed) -> None:
        self.launched.append(claimed.record.job_id)
        self.running.add(claimed.record.job_id)

    def adopt(self, claimed: Claimed) -> bool:
        if self.can_adopt:
            self.running.add(claimed.record.job_id)
        return self.can_adopt

    def updates(self) -> list[Update]:
        out, self.pending_updates = self.pending_updates, []
        return out

    def cancel(self, job_id: str) -> bool:
        if job_id in self.running:
            self.cancelled.append(job_id)
            self.finish(Outcome(job_id, error=JobError(type=ErrorType.cancelled,
                                                       message="cancelled by user")))
            return True
        return False

    def collect(self) -> list[Outcome]:
        out, self.pending = self.pending, []
        return out

    def active(self) -> set[str]:
        return self.running | self.saving

    def holding(self) -> set[str]:
        return set(self.running)

    def shutdown(self) -> list[Outcome]:
        out = [Outcome(j, requeue=True) for j in sorted(self.running)]
        self.running.clear()
        return out + self.collect()

    def finish(self, outcome: Outcome) -> None:
        self.running.discard(outcome.job_id)
        self.saving.discard(outcome.job_id)
        self.pending.append(outcome)

    def end_calculation(self, job_id: str) -> None:
        """The job's calculation is over (its slot is free); its outcome comes later
        (`finish`), as the local executor's job saving its results."""
        self.running.discard(job_id)
        self.saving.add(job_id)


def success(job_id: str, energy: float = -5.0705444) -> Outcome:
    result = JobResult(
        energy=energy, gap=14.38, dipole=None, partial_charges=None, geometry=None,
        frequencies=None, converged=True, xtb_version="6.5.1", method="gfn2", task="opt",
        wall_time=0.1, quality=Quality(converged=True, gap_ok=True, ok=True))
    return Outcome(job_id, report=RunReport(success=True, result=result, error=None,
                                            job_id=job_id, started_at=utcnow(),
                                            finished_at=utcnow()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(store: JobStore, cap: int = 3, *, instance: str = "me", can_adopt: bool = False,
         **kw: object) -> tuple[Scheduler, FakeExecutor, Clock]:
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=cap, **kw)
    ex = FakeExecutor(cap)
    ex.can_adopt = can_adopt
    clock = Clock()
    sched = Scheduler(store, ex, settings, instance=instance, clock=clock)
    sched.start()
    return sched, ex, clock


def test_cap_is_respected_and_slots_refill(store: JobStore) -> None:
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(5)]
    sched, ex, _ = make(store, cap=2)
    report = sched.run_once()
    assert ex.launched == ids[:2]
    assert report.queued == 3
    assert sched.run_once().launched == []  # cap reached
    ex.finish(success(ids[0]))
    report = sched.run_once()
    assert report.finished == [ids[0]] and report.launched == [ids[2]]
    assert store.read(ids[0]).status is Status.COMPLETED
    assert store.read(ids[2]).status is Status.RUNNING


def test_higher_priority_runs_first_fifo_within_one(store: JobStore) -> None:
    low = store.submit(water_spec(), input_text=WATER).job_id
    high1 = store.submit(water_spec(priority=10), input_text=WATER).job_id
    high2 = store.submit(water_spec(priority=10), input_text=WATER).job_id
    sched, ex, _ = make(store, cap=1)
    order = []
    for _ in range(3):
        sched.run_once()
        order.append(ex.launched[-1])
        ex.finish(success(ex.launched[-1]))
    assert order == [high1, high2, low]


def test_outcomes_become_terminal_records(store: JobStore) -> None:
    a, b, c = (store.submit(water_spec(), input_text=WATER).job_id for _ in range(3))
    sched, ex, _ = make(store)
    sched.run_once()
    ex.finish(success(a, -5.07))
    ex.finish(Outcome(b, error=JobError(type=ErrorType.timeout, message="took > 1 s")))
    ex.finish(Outcome(c, requeue=True))
    sched.run_once()  # c is relaunched in the same pass
    ra, rb, rc = (store.read(j) for j in (a, b, c))
    assert ra.status is Status.COMPLETED and ra.result is not None
    assert ra.result.energy == -5.07 and ra.finished_at is not None
    assert rb.status is Status.FAILED and rb.error is not None and rb.error.type == "timeout"
    assert rc.status is Status.RUNNING and ex.launched.count(c) == 2
    assert rc.attempts == 1  # an interruption is not counted as an attempt


def test_cancel_of_queued_and_running_jobs(store: JobStore) -> None:
    running = store.submit(water_spec(), input_text=WATER).job_id
    queued = store.submit(water_spec(), input_text=WATER).job_id
    sched, ex, _ = make(store, cap=1)
    sched.run_once()
    store.cancels.request(queued)
    store.cancels.request(running)
    sched.run_once()
    sched.run_once()
    assert ex.cancelled == [running]
    assert store.read(queued).status is Status.CANCELLED
    assert store.read(running).status is Status.CANCELLED
    assert store.cancels.pending() == []
    assert queued not in ex.launched


def test_one_bad_record_never_stops_the_others(store: JobStore) -> None:
    bad = store.submit(water_spec(), input_text=WATER).job_id
    good = store.submit(water_spec(), input_text=WATER).job_id
    store.layout.metadata(bad).write_text("garbage")
    sched, ex, _ = make(store)
    sched.run_once()
    assert ex.launched == [good]


def _dead_worker_owns(store: JobStore, job_id: str, attempts: int = 1) -> None:
    """Simulate another worker that claimed job_id and then died (SIGKILL)."""
    other, _, _ = make(store)
    other.instance = "dead-worker"
    other.heartbeats.instance = "dead-worker"
    other.heartbeats.beat(1)
    key = next(k for k in store.queue.queued() if k.job_id == job_id)
    claimed = store.queue.claim(key, "dead-worker", other._placement())
    assert claimed is not None
    store.write(claimed.record.evolve(attempts=attempts))


def test_jobs_of_a_dead_worker_are_requeued_after_the_lease(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    _dead_worker_owns(store, job)
    sched, ex, clock = make(store, lease_seconds=60)
    sched.run_once()
    assert ex.launched == [] and store.read(job).status is Status.RUNNING
    clock.now += 59
    sched.run_once()
    assert ex.launched == []
    clock.now += 2
    report = sched.run_once()
    assert report.recovered == [job]
    assert ex.launched == [job]
    assert store.read(job).attempts == 2
    assert not (store.layout.workers / "dead-worker").exists()


def test_a_live_worker_is_not_judged_dead(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    _dead_worker_owns(store, job)
    sched, ex, clock = make(store, lease_seconds=60)
    for _ in range(5):
        sched.run_once()
        clock.now += 30
        # the other worker keeps beating
        (store.layout.workers / "dead-worker").write_text(f"{clock.now}")
    assert ex.launched == []


def test_a_job_whose_workers_keep_dying_fails_after_the_retry_limit(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    _dead_worker_owns(store, job, attempts=3)
    sched, ex, clock = make(store, lease_seconds=10, max_attempts=3)
    sched.run_once()
    clock.now += 11
    sched.run_once()
    rec = store.read(job)
    assert rec.status is Status.FAILED
    assert rec.error is not None and rec.error.type == "infrastructure_error"
    assert ex.launched == []


def test_shutdown_requeues_running_jobs_and_removes_heartbeat(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, _, _ = make(store)
    sched.run_once()
    sched.shutdown()
    assert store.read(job).status is Status.QUEUED
    assert [k.job_id for k in store.queue.queued()] == [job]
    assert list(store.layout.workers.iterdir()) == []


def test_health_line_every_interval(store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    sched, _, clock = make(store, health_check_interval=30)
    caplog.set_level(logging.INFO, logger="qforge.scheduling.core")
    for _ in range(7):
        sched.run_once()
        clock.now += 10
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Health")]
    assert lines[0] == "Health check: active_jobs=0, status=healthy, worker=worker_1"
    assert len(lines) == 3  # t=0, 30, 60


def test_a_restarted_scheduler_adopts_its_own_claims(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    first, _, _ = make(store, instance="k8s.ns.ctl")
    first.run_once()
    # restart with the same (stable) instance name: the executor resumes the job
    second, ex, _ = make(store, instance="k8s.ns.ctl", can_adopt=True)
    assert ex.running == {job}
    ex.finish(success(job))
    second.run_once()
    assert store.read(job).status is Status.COMPLETED and store.read(job).attempts == 1


def test_a_restarted_local_worker_requeues_what_it_cannot_adopt(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    first, _, _ = make(store, instance="w.same")
    first.run_once()
    second, ex, _ = make(store, instance="w.same", can_adopt=False)
    assert ex.running == set()
    second.run_once()
    assert ex.launched == [job]


def test_workers_never_take_back_a_kubernetes_controllers_jobs(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    ctl, _, _ = make(store, instance="k8s.ns.ctl")
    ctl.run_once()
    worker, ex, clock = make(store, lease_seconds=1)
    for _ in range(3):
        worker.run_once()
        clock.now += 5
    assert ex.launched == [] and store.read(job).status is Status.RUNNING


def test_updates_record_placement_and_why_a_job_waits(store: JobStore) -> None:
    from qforge.record import Placement

    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, ex, _ = make(store)
    sched.run_once()
    where = Placement(executor="kubernetes", k8s_job="qf-x", pod="qf-x-abc")
    ex.pending_updates.append(Update(job, placement=where,
                                     waiting_reason="pod Pending: Unschedulable"))
    sched.run_once()
    rec = store.read(job)
    assert rec.placement == where and rec.waiting_reason == "pod Pending: Unschedulable"


def test_a_submission_to_an_idle_scheduler_is_new_work_at_the_cap_it_is_not(
        store: JobStore) -> None:
    sched, ex, _ = make(store, cap=1)
    report = sched.run_once()
    assert report.queued == 0 and not sched.new_work(report)
    first = store.submit(water_spec(), input_text=WATER).job_id
    assert sched.new_work(report)  # the queue was empty: act now
    report = sched.run_once()
    assert report.launched == [first] and not sched.new_work(report)
    store.submit(water_spec(), input_text=WATER)
    report = sched.run_once()
    assert report.queued == 1 and not sched.new_work(report)
    store.submit(water_spec(), input_text=WATER)
    assert not sched.new_work(report)  # at the cap, a submission cannot start yet
    store.cancels.request(first)
    assert sched.new_work(report)  # a cancel is acted on at once, cap or not
    report = sched.run_once()
    assert first in ex.cancelled and not sched.new_work(report)


def test_wait_for_work_ends_at_a_submission_or_a_job_ending_not_at_the_poll(
        store: JobStore) -> None:
    # The fake clock never moves: only a reason to act ends the wait.
    sched, ex, _ = make(store, cap=1, poll_interval=3600)
    stop = threading.Event()

    def waiter(report: PassReport) -> threading.Thread:
        t = threading.Thread(target=sched.wait_for_work, args=(stop, report), daemon=True)
        t.start()
        return t

    try:
        t = waiter(sched.run_once())
        job_id = store.submit(water_spec(), input_text=WATER).job_id
        t.join(timeout=30)
        assert not t.is_alive(), "a submission to an idle scheduler did not end the wait"
        assert sched.run_once().launched == [job_id]
        # A job that ends while a pass runs (after it collected) wakes the next wait.
        ex.collect = lambda: (ex.wake.set(), [])[1]  # type: ignore[method-assign]
        t = waiter(sched.run_once())
        t.join(timeout=30)
        assert not t.is_alive(), "a wake-up during the pass was lost"
    finally:
        stop.set()
