"""The scheduler's record of what became of its jobs: an executor's outcome or update
written as the job's record (behind the pass, or inline), and a claimed job finished
without running (cancelled, given up). Mixed into `core.Scheduler`."""

from __future__ import annotations

import logging
import socket

from qforge.record import JobRecord, Placement, Status
from qforge.scheduling.executor import Executor, Outcome, Update
from qforge.scheduling.observer import SchedulerObserver
from qforge.scheduling.recorder import Inline, Recorder
from qforge.scheduling.retrying import retry_by_ladder
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, CorruptRecord, JobNotFound, JobStore
from qforge_runner.result import ErrorType, JobError
from qforge_runner.timestamps import utcnow

log = logging.getLogger("qforge.scheduling.core")


class Outcomes:
    """Writes a job's outcome; the state it uses is the Scheduler's."""

    store: JobStore
    executor: Executor
    settings: Settings
    instance: str
    observer: SchedulerObserver
    writes: Recorder
    _claimed: dict[str, Claimed]

    def _placement(self) -> Placement:
        return Placement(
            executor="kubernetes" if self.executor.kind == "kubernetes" else "local",
            worker_id=self.settings.worker_id,
            instance=self.instance,
            host=socket.gethostname(),
        )

    def _record(self, outcome: Outcome) -> None:
        claimed = self._claimed.pop(outcome.job_id, None)
        if claimed is None:
            log.warning("Outcome for job %s that this worker did not claim", outcome.job_id)
            return
        self.writes.submit(lambda: self._write_outcome(claimed, outcome))

    def _write_outcome(self, claimed: Claimed, outcome: Outcome) -> None:
        """Read the record as it is now, write the job's terminal state (or put it back
        in the queue) and drop its running marker."""
        try:
            self._record_claimed(claimed, outcome)
        except OSError:
            if isinstance(self.writes, Inline):
                # Still ours: run_once keeps the outcome and records it at a later pass.
                # (Behind the pass, the writer retries this very write instead.)
                self._claimed[outcome.job_id] = claimed
            raise

    def _record_claimed(self, claimed: Claimed, outcome: Outcome) -> None:
        try:
            current = self.store.read(outcome.job_id)
        except CorruptRecord as exc:
            # Only the scheduler writes a claimed job's record: this instance's copy from
            # the claim is the record as it should be. The outcome is not lost.
            log.error("Job %s: %s; its record is rewritten from this worker's copy",
                      outcome.job_id, exc)
            current = claimed.record
        except JobNotFound as exc:
            log.error("Job %s: cannot record its outcome: %s", outcome.job_id, exc)
            self.store.queue.drop_running_marker(claimed.marker)
            return
        if outcome.requeue:
            log.info("Job %s interrupted: back in the queue", outcome.job_id)
            self.store.queue.requeue(current, claimed.marker, count_attempt=False)
            return
        now = utcnow()
        placement = outcome.placement or current.placement
        report = outcome.report
        if report is not None and report.success and report.result is not None:
            result = report.result
            record = current.evolve(
                status=Status.COMPLETED, finished_at=now, result=result.summary(),
                error=None, placement=placement)
            gap = f", gap {result.gap:.4f} eV" if result.gap is not None else ""
            log.info("Job %s completed: E=%.10f Eh%s in %.2f s",
                     outcome.job_id, result.energy, gap, result.wall_time)
        else:
            error = outcome.error or (report.error if report else None) or JobError(
                type=ErrorType.infrastructure_error, message="the runner reported nothing")
            status = Status.CANCELLED if error.type == ErrorType.cancelled else Status.FAILED
            record = current.evolve(status=status, finished_at=now, error=error,
                                    placement=placement)
            log.info("Job %s %s (%s): %s", outcome.job_id, status.value.lower(),
                     error.type, error.message)
        if retry_by_ladder(self.store, self.settings, claimed, record, report) is not None:
            return  # queued again as its next attempt (scheduling/ladder.py)
        self.store.queue.finish(claimed, record)
        self.observer.job_finished(record)

    def _apply(self, update: Update) -> None:
        if update.job_id in self._claimed:
            self.writes.submit(lambda: self._write_update(update))

    def _write_update(self, update: Update) -> None:
        try:
            record = self.store.read(update.job_id)
        except (JobNotFound, CorruptRecord):
            return
        if record.status is not Status.RUNNING:
            return
        changes: dict[str, object] = {}
        if update.placement is not None and update.placement != record.placement:
            changes["placement"] = update.placement
        if update.waiting_reason != record.waiting_reason:
            changes["waiting_reason"] = update.waiting_reason
        if changes:
            self.store.write(record.evolve(**changes))
            if update.waiting_reason:
                log.info("Job %s waits: %s", update.job_id, update.waiting_reason)

    def _finish(self, claimed: Claimed, record: JobRecord) -> None:
        self.writes.submit(lambda: self.store.queue.finish(claimed, record))
        self.observer.job_finished(record)
