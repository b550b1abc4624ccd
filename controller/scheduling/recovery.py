"""What the scheduler tidies up: cancel requests, the claims of dead workers (their jobs
requeued, or failed after too many attempts) and claims of its own that no job in flight
stands behind. Mixed into `core.Scheduler`."""

from __future__ import annotations

import logging

from qforge.record import Status
from qforge.scheduling.dependencies import Dependencies
from qforge.scheduling.outcomes import Outcomes
from qforge.scheduling.report import PassReport
from qforge.store.heartbeats import Heartbeats, others_may_recover
from qforge.store.jobstore import Claimed, CorruptRecord, JobNotFound
from qforge.store.layout import QueueKey, RunningMarker
from qforge.store.waiting import is_waiting
from qforge_runner.result import ErrorType, JobError
from qforge_runner.timestamps import utcnow

log = logging.getLogger("qforge.scheduling.core")


class Recovery(Outcomes):
    """Cancels and recovery; the state it uses is the Scheduler's."""

    heartbeats: Heartbeats
    deps: Dependencies
    _cancels_seen: list[str]

    def _requeue_strays(self) -> None:
        """Claims of this instance that no job in flight stands behind: an operation
        interrupted by a store error (a claim whose RUNNING record could not be written,
        a take-over whose requeue failed) is undone here, so no job stays RUNNING."""
        for marker in self.store.queue.running_markers():
            if marker.instance != self.instance or marker.job_id in self._claimed:
                continue
            claimed = self._still_running(marker, "a stray claim")
            if claimed is not None:
                log.warning("Job %s: claimed here but not running: back in the queue",
                            marker.job_id)
                self.store.queue.requeue(claimed.record, marker, count_attempt=False)

    def _handle_cancels(self, report: PassReport) -> None:
        active = self.executor.active()
        self._cancels_seen = self.store.cancels.pending()
        for job_id in self._cancels_seen:
            if job_id in active:
                if self.executor.cancel(job_id):
                    log.info("Cancelling running job %s", job_id)
                continue
            try:
                record = self.store.read(job_id)
            except (JobNotFound, CorruptRecord):
                self.store.cancels.clear(job_id)
                continue
            if record.status.terminal:
                self.store.cancels.clear(job_id)
            elif is_waiting(record):
                if self.deps.cancel(job_id) is not None:
                    report.cancelled.append(job_id)
            elif record.status is Status.QUEUED:
                key = QueueKey.make(record.spec.priority, record.created_ns, job_id)
                cancelled = self.store.queue.cancel_queued(key, self.instance, self._placement())
                if cancelled is not None:
                    log.info("Job %s cancelled before it started", job_id)
                    report.cancelled.append(job_id)
                    self.observer.job_finished(cancelled)
            # RUNNING elsewhere: its owner acts on the request.

    # -------------------------------------------------------------- recovery
    def _recover_dead(self, report: PassReport) -> None:
        markers = self.store.queue.running_markers()
        instances = {m.instance for m in markers} | self.heartbeats.beating()
        # Only the jobs of instances whose executor ran them in its own process: a
        # controller's run in the cluster, and only a controller (adopting) acts on them.
        instances = {i for i in instances if others_may_recover(i)}
        dead = self.heartbeats.dead(instances)
        if not dead:
            return
        for marker in markers:
            if marker.instance in dead:
                self._recover(marker, report)
        still_owning = {m.instance for m in self.store.queue.running_markers()}
        for inst in dead - still_owning:
            self.heartbeats.forget(inst)

    def _still_running(self, marker: RunningMarker, what: str) -> Claimed | None:
        """The RUNNING record behind a running marker, or None after tidying up: the
        marker goes when the record is unreadable or no longer RUNNING, and a QUEUED
        record (its claimant stopped between the claim and writing RUNNING) gets its
        queue marker back."""
        try:
            record = self.store.read(marker.job_id)
        except (JobNotFound, CorruptRecord) as exc:
            log.error("Job %s: dropped %s: %s", marker.job_id, what, exc)
            self.store.queue.drop_running_marker(marker)
            return None
        if record.status is Status.RUNNING:
            return Claimed(record, marker)
        self.store.queue.drop_running_marker(marker)
        if record.status is Status.QUEUED:
            self.store.repair.ensure_queued(record)
        elif record.status.terminal:
            self.store.repair.ensure_done(record)  # and its dependents signalled
        return None

    def _recover(self, marker: RunningMarker, report: PassReport) -> None:
        mine = self.store.queue.take_over(marker, self.instance)
        if mine is None:
            return  # another worker is recovering it
        try:
            self._recover_taken(marker, mine, report)
        except OSError:
            # back to the dead owner: the recovery is tried again at a later pass
            self.store.queue.take_over(mine, marker.instance)
            raise

    def _recover_taken(self, marker: RunningMarker, mine: RunningMarker,
                       report: PassReport) -> None:
        claimed = self._still_running(mine, "the dead worker's claim")
        if claimed is None:
            return
        record = claimed.record
        who = marker.instance
        if self.store.cancels.requested(record.job_id):
            self._finish(claimed, record.cancelled_by_user(started=True))
        elif (claims := record.claims_this_attempt) >= self.settings.max_attempts:
            log.warning("Job %s: worker %s died running it; attempt %d of %d: failing it",
                        record.job_id, who, claims, self.settings.max_attempts)
            self._finish(claimed, record.evolve(
                status=Status.FAILED, finished_at=utcnow(),
                error=JobError(
                    type=ErrorType.infrastructure_error,
                    message=(f"the worker running it stopped responding "
                             f"{claims} times; giving up"))))
        else:
            log.warning("Job %s: worker %s stopped responding; requeued (attempt %d of %d)",
                        record.job_id, who, claims, self.settings.max_attempts)
            self.store.queue.requeue(record, mine, count_attempt=True)
        report.recovered.append(record.job_id)
