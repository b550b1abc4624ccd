"""The one place a verdict is written: its Event and Job deletion, then, once the
scheduler has recorded the outcome, the Job's clean-up.

Order matters. `write` turns a verdict (controller/k8s/verdict.py) into the outcome the
scheduler records, posting its Event (failures only, unless SUCCESS_EVENTS) and deleting
a Job that can never run. A Job is cleaned up only after the record holds its outcome:
`recorded` queues it, and the next `flush` (the next collect, after the scheduler wrote
the record) checks the record, then deletes the Job once JOB_KEEP_SECONDS have passed
(the controller is the only deleter of its Jobs: a Job never vanishes before its
outcome is recorded). With TTL_SECONDS_AFTER_FINISHED set, Kubernetes deletes them
instead and qforge's finalizer guards the outcome: the clean-up takes it off. A Job a
controller stopped before cleaning up is swept (`sweep_one`) when a listing or an
event shows it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from qforge.k8s import events, naming
from qforge.k8s.apiwriter import ApiWriter
from qforge.k8s.tracker import Tracker
from qforge.k8s.verdict import Decision
from qforge.record import JobRecord, Placement
from qforge.scheduling.executor import Outcome
from qforge.settings import Settings
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore

log = logging.getLogger(__name__)

__all__ = ["Settler", "outcome_recorded"]


class Settler:
    def __init__(self, store: JobStore, api: ApiWriter, tracker: Tracker,
                 settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.api = api
        self.tracker = tracker
        self.keep = settings.job_keep_seconds
        # Kubernetes' TTL controller deletes the Jobs (they carry the finalizer), or this
        # controller does, JOB_KEEP_SECONDS after their outcome is recorded.
        self.owner_deletes = settings.ttl_seconds_after_finished is None
        self.success_events = settings.success_events
        self._clock = clock
        self._recorded: list[tuple[str, str]] = []  # (job id, Job name), under the lock
        self._due: deque[tuple[float, str]] = deque()  # (when, Job name) to delete

    def write(self, decision: Decision, name: str, uid: str | None,
              placement: Placement) -> Outcome:
        """Post the verdict's Event, delete the Job if it says so; the outcome."""
        if decision.delete_job:
            self.api.submit(functools.partial(self._delete, name))
        if decision.event is not None and (decision.error is not None
                                           or self.success_events):
            reason, message, warning = decision.event
            self.event(name, uid, reason, message, warning=warning)
        return Outcome(decision.job_id, report=decision.report, error=decision.error,
                       requeue=decision.requeue,
                       placement=placement if decision.placed else None)

    def recorded(self, job_id: str, name: str) -> None:
        """An outcome handed to the scheduler: its Job's clean-up comes at the next
        flush, once the record holds it (under the tracker's lock)."""
        self._recorded.append((job_id, name))
        self.tracker.releasing.add(name)

    def flush(self) -> None:
        """Clean up the Jobs whose outcome the scheduler recorded since the last flush,
        sweep the untracked Jobs a listing or an event found, and delete the Jobs whose
        keep time is over."""
        now = self._clock()
        with self.tracker.lock:
            release, self._recorded = self._recorded, []
            sweep, self.tracker.sweep = self.tracker.sweep, set()
            due: list[str] = []
            while self._due and self._due[0][0] <= now:
                due.append(self._due.popleft()[1])
        for job_id, name in release:
            self.api.submit(functools.partial(self.release, job_id, name))
        for name in sweep:
            self.sweep_one(name)
        for name in due:
            self.api.submit(functools.partial(self._delete, name))

    def forget(self) -> None:
        with self.tracker.lock:
            self._recorded.clear()
            self._due.clear()

    def release(self, job_id: str, name: str) -> None:
        """Clean up a Job once its record holds the outcome (or the record is gone):
        take qforge's finalizer off (then its TTL may remove it), or, the controller
        being its deleter, delete it once JOB_KEEP_SECONDS have passed. Until then the
        Job stays (and its name in `releasing`)."""
        scheduled = False
        try:
            scheduled = self._release_once(job_id, name)
        finally:
            if not scheduled:
                with self.tracker.lock:
                    self.tracker.releasing.discard(name)

    def _release_once(self, job_id: str, name: str) -> bool:
        try:
            if not outcome_recorded(self.store.read(job_id), name):
                return False  # not recorded (yet): the Job stays as it is
        except JobNotFound:
            pass
        except CorruptRecord as exc:
            log.error("Job %s: keeping Job %s: %s", job_id, name, exc)
            return False
        with self.tracker.lock:
            state = self.tracker.view.state(name)
            body = self.tracker.view.body(name)
            unseen = self.tracker.view.pending(name)  # created, not yet shown
        if state is not None and state.finalizer:

            def forget() -> None:
                with self.tracker.lock:
                    self.tracker.view.drop_body(name)

            self.api.remove_finalizer(name, body, forget)
        if not self.owner_deletes or (state is not None and state.deleting):
            return False  # its TTL (or whoever deletes it now) removes it
        if state is None and not unseen:
            return False  # gone already
        if self.keep <= 0:
            self._delete(name)
            return True
        with self.tracker.lock:
            self._due.append((self._clock() + self.keep, name))
        return True

    def _delete(self, name: str) -> None:
        """Delete a Job. Its name stays in `releasing` until the watch shows it gone
        (events of it still in flight must not sweep it again), unless the deletion
        failed: then a later listing or event sweeps it again."""
        deleted = False
        try:
            deleted = self.api.delete_job(name)
        finally:
            if not deleted:
                with self.tracker.lock:
                    self.tracker.releasing.discard(name)

    def sweep_one(self, name: str) -> None:
        """An untracked Job to clean up, once its outcome is recorded (a crash between
        recording an outcome and the clean-up, or a Job no record claims any more)."""
        tracker = self.tracker
        with tracker.lock:
            if name in tracker.by_name or name in tracker.releasing:
                return
            state = tracker.view.state(name)
            if state is None or state.job_id is None:
                return
            job_id = state.job_id
            tracker.releasing.add(name)
        try:
            record: JobRecord | None = self.store.read(job_id)
        except JobNotFound:
            record = None
        except CorruptRecord:
            with tracker.lock:
                tracker.releasing.discard(name)
            return
        if record is None or outcome_recorded(record, name):
            self.api.submit(functools.partial(self.release, job_id, name))
        else:
            with tracker.lock:
                tracker.releasing.discard(name)

    def event(self, name: str, uid: str | None, reason: str, message: str,
              *, warning: bool = False) -> None:
        body = events.build_event(job_name=name, namespace=self.api.namespace,
                                  reason=reason, message=message, now=datetime.now(UTC),
                                  job_uid=uid, event_type="Warning" if warning else "Normal")
        self.api.submit(functools.partial(self.api.post_event, name, reason, body))


def outcome_recorded(record: JobRecord, name: str) -> bool:
    """Whether the run of the Job `name` is over and in the record: the record is
    terminal, or that run is one of the earlier attempts in its history (the retry
    ladder queued the job again: docs/retry.md)."""
    if record.status.terminal:
        return True
    claims = record.history[-1].claims if record.history else 0
    return any(naming.job_name(record.job_id, k) == name for k in range(1, claims + 1))
