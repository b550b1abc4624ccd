"""What one scheduler did: the `SchedulerObserver` the scheduling core calls.

Counters count this process's own work, so several workers sharing a store add up
(`sum` in PromQL); the times come from the records (`created_at`, `started_at`,
`finished_at`), so a job's queue wait includes the time before this process started.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from qforge.metrics import buckets
from qforge.record import JobRecord, Status
from qforge_runner.result import ErrorType

if TYPE_CHECKING:
    from qforge.scheduling.core import PassReport

RAN = frozenset({Status.COMPLETED, Status.FAILED})


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one ISO-8601 UTC stamp of a record to another; None if one is absent
    or unreadable."""
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return None
    return max(0.0, delta.total_seconds())


def error_type(record: JobRecord) -> str:
    """The `error_type` label: the record's error type, `none` for a completed job."""
    if record.error is not None:
        return str(record.error.type)
    return ErrorType.cancelled.value if record.status is Status.CANCELLED else "none"


class SchedulingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter(
            "qforge_jobs_started", "Jobs this process claimed and launched.",
            registry=registry)
        self.finished = Counter(
            "qforge_jobs_finished",
            "Jobs this process brought to a terminal state, by status and error type.",
            ["status", "error_type"], registry=registry)
        self.recovered = Counter(
            "qforge_jobs_recovered",
            "Jobs of dead workers this process took back (requeued or failed).",
            registry=registry)
        self.queue_wait = Histogram(
            "qforge_job_queue_wait_seconds",
            "Seconds from a job's submission to its start (jobs this process started).",
            buckets=buckets.QUEUE_WAIT, registry=registry)
        self.run_time = Histogram(
            "qforge_job_run_seconds",
            "Seconds from a job's start to its end (completed or failed jobs).",
            buckets=buckets.RUN_TIME, registry=registry)
        self.xtb_wall = Histogram(
            "qforge_xtb_wall_seconds", "xtb's own wall time of each completed job.",
            buckets=buckets.XTB_WALL, registry=registry)
        self.pass_duration = Histogram(
            "qforge_scheduling_pass_duration_seconds", "Seconds one scheduling pass took.",
            buckets=buckets.PASS, registry=registry)
        self.last_pass = Gauge(
            "qforge_scheduling_last_pass_timestamp_seconds",
            "Unix time at which the last scheduling pass ended (0: none yet).",
            registry=registry)
        # Store-wide, as this scheduler saw it at its last pass (every worker of a store
        # reports the same numbers: take `max by (owner)`, not a sum).
        self.owner_running = Gauge(
            "qforge_owner_running_jobs",
            "Jobs running in the store, by owner (at this scheduler's last pass).",
            ["owner"], registry=registry)
        self.owner_queued = Gauge(
            "qforge_owner_queued_jobs",
            "Jobs queued in the store, by owner (at this scheduler's last pass).",
            ["owner"], registry=registry)
        self._owners: set[str] = set()
        # Every outcome's series exists from the start (a rate over it is never "no data").
        self.finished.labels(Status.COMPLETED.value.lower(), "none")
        self.finished.labels(Status.CANCELLED.value.lower(), ErrorType.cancelled.value)
        for kind in ErrorType:
            if kind is not ErrorType.cancelled:
                self.finished.labels(Status.FAILED.value.lower(), kind.value)

    # ---------------------------------------------------- SchedulerObserver
    def job_started(self, record: JobRecord) -> None:
        self.started.inc()
        wait = seconds_between(record.created_at, record.started_at)
        if wait is not None:
            self.queue_wait.observe(wait)

    def job_finished(self, record: JobRecord) -> None:
        self.finished.labels(record.status.value.lower(), error_type(record)).inc()
        if record.status in RAN:
            ran = seconds_between(record.started_at, record.finished_at)
            if ran is not None:
                self.run_time.observe(ran)
        if record.status is Status.COMPLETED and record.result is not None:
            self.xtb_wall.observe(record.result.wall_time)

    def pass_done(self, report: PassReport, seconds: float) -> None:
        self.pass_duration.observe(seconds)
        self.last_pass.set(time.time())
        if report.recovered:
            self.recovered.inc(len(report.recovered))
        for owner, (running, queued) in report.owners.items():
            self.owner_running.labels(owner).set(running)
            self.owner_queued.labels(owner).set(queued)
        for gone in self._owners - report.owners.keys():  # no job left: no series
            self.owner_running.remove(gone)
            self.owner_queued.remove(gone)
        self._owners = set(report.owners)
