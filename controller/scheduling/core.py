"""The scheduling core: one pass finds queued jobs, fills the free slots under the cap
taking turns between owners (fair share: scheduling/fairshare.py; priority and first
come first served within an owner's group), claims, launches, records outcomes, acts on
cancel requests and recovers the jobs of dead workers. The same core drives the local
executor (`qforge worker`) and the Kubernetes executor (`qforge controller`).

One module per concern: this one holds the pass (launching under the fair share, the
wait between passes); scheduling/outcomes.py writes what became of a job;
scheduling/recovery.py acts on cancel requests and recovers the jobs of dead workers;
scheduling/report.py holds `PassReport` (re-exported here).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from qforge.record import Status
from qforge.scheduling.dependencies import Dependencies
from qforge.scheduling.executor import Executor, Outcome
from qforge.scheduling.fairshare import FairQueue, Policy, by_owner
from qforge.scheduling.observer import NullObserver, SchedulerObserver
from qforge.scheduling.owners import Owners, Tag
from qforge.scheduling.recorder import Inline, Recorder, WriteBehind
from qforge.scheduling.recovery import Recovery
from qforge.scheduling.report import PassReport as PassReport  # re-exported: the API
from qforge.settings import Settings
from qforge.store.heartbeats import Heartbeats, instance_name
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import Claimed, JobStore
from qforge.store.layout import RunningMarker, sanitize_instance
from qforge_runner.result import ErrorType, JobError
from qforge_runner.timestamps import utcnow

log = logging.getLogger(__name__)

# Heartbeats are rewritten at most this often (a pass can run many times a second when
# short jobs end one after another); far below any sensible lease.
BEAT_EVERY = 1.0
# Between passes the queue and cancel folders are looked at this often (an empty or tiny
# folder read: microseconds): a submission to an idle worker, or a cancel, is acted on at
# once, not at the next poll.
WATCH_EVERY = 0.25


def make_instance(worker_id: str) -> str:
    """A unique name for this process: two workers sharing WORKER_ID never collide."""
    host = socket.gethostname().split(".")[0]
    return sanitize_instance(f"{worker_id}.{host}.{os.getpid()}.{secrets.token_hex(2)}")


class Scheduler(Recovery):
    def __init__(
        self,
        store: JobStore,
        executor: Executor,
        settings: Settings,
        *,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        write_behind: bool = False,
        observer: SchedulerObserver | None = None,
    ) -> None:
        """`write_behind`: record writes (claims, outcomes, heartbeats) go to a
        background thread (`recorder.WriteBehind`) so a pass never waits for the disk;
        the local worker uses it. Off, each is written during the pass."""
        self.observer: SchedulerObserver = observer or NullObserver()
        self.store = store
        self.executor = executor
        self.settings = settings
        self.instance = instance_name(instance or make_instance(settings.worker_id),
                                      others_may_recover=executor.others_may_recover)
        self.clock = clock
        self.index = IndexKeeper(store)
        self.heartbeats = Heartbeats(store, self.instance, settings.worker_id,
                                     settings.lease_seconds, clock)
        self._claimed: dict[str, Claimed] = {}
        # Jobs waiting for others: released or ended when a parent ends (dependencies.py)
        # (its own verdict on the dead: a Heartbeats forgets instances it is not asked of)
        verdict = Heartbeats(store, self.instance, settings.worker_id,
                             settings.lease_seconds, clock)
        self.deps = Dependencies(store, self.instance, verdict.dead, clock,
                                 on_finished=lambda r: self.observer.job_finished(r))
        # Fair share (scheduling/fairshare.py): who owns each queued and running job,
        # the queue per owner and group, the weights and limits.
        self.owners = Owners.of(store)
        self.policy = Policy.from_settings(settings)
        self.fair = FairQueue(self.owners, self.policy)
        self.wake = threading.Event()
        self._errors_lock = threading.Lock()
        self.writes: Recorder = (
            WriteBehind(on_idle=self._writes_drained,
                        retry_seconds=min(1.0, settings.poll_interval),
                        on_store_error=lambda exc: self._store_failed(exc, "a record write"))
            if write_behind else Inline())
        executor.attach(self.wake)
        self._last_beat = -1e18
        self._last_health = -1e18
        self._last_sync = -1e18
        self.last_pass_finished: float | None = None
        self._cancels_seen: list[str] = []
        # Outcomes whose record could not be written (a full or read-only store): kept
        # and recorded at a later pass, so a finished calculation is never lost.
        self._unrecorded: list[Outcome] = []
        # Hook for a metric: store operations that failed with an OSError (ENOSPC,
        # EROFS, EIO, ...), and the last one's words; the pass is retried later.
        self.store_errors = 0
        self._strays_checked = 0  # store_errors when claims were last checked for strays
        self.last_store_error: str | None = None

    def _writes_drained(self) -> None:
        """The record writer's queue emptied: a pass may now find the worker idle — but
        only when it holds no job (one that does is woken again when a job ends), so
        the writer does not add a pass per job."""
        if not self._claimed:
            self.wake.set()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.store.ensure()
        self._sync_index()
        self._adopt_own()
        self.deps.adopt_own()
        self.heartbeats.beat(0)

    def _sync_index(self) -> None:
        self._last_sync = self.clock()
        report = self.index.sync()
        if report.read or report.markers_removed or report.indexed or report.stale_removed:
            log.info(
                "Index synced: %d jobs, %d queued; %d records read (%d queue markers "
                "added, %d stale removed; %d other index entries added, %d stale removed)",
                report.jobs, report.queued, report.read, report.markers_created,
                report.markers_removed, report.indexed, report.stale_removed,
            )

    def _adopt_own(self) -> None:
        """Jobs this instance claimed before a restart (a stable instance name, as the
        Kubernetes controller uses) are handed back to the executor or requeued."""
        for marker in self.store.queue.running_markers():
            if marker.instance != self.instance:
                continue
            claimed = self._still_running(marker, "its claim")
            if claimed is None:
                continue
            record = claimed.record
            if self.executor.adopt(claimed):
                log.info("Resuming job %s", record.job_id)
                self._claimed[record.job_id] = claimed
            else:
                log.info("Job %s was interrupted by a restart: back in the queue",
                         record.job_id)
                self.store.queue.requeue(record, marker, count_attempt=False)

    def shutdown(self) -> None:
        """Stop the executor; interrupted jobs go back to the queue."""
        for outcome in self.executor.shutdown():
            self._record(outcome)
        self.writes.close(timeout=30)
        self.heartbeats.retire()

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> None:
        log.info("Worker listening for jobs every %gs...", self.settings.poll_interval)
        while not stop.is_set():
            try:
                report = self.run_once()
            except OSError as exc:  # the store is full, read-only or gone: keep going
                self._store_failed(exc, "a pass over the job store")
                stop.wait(self.settings.poll_interval)
                continue
            if until_idle and self.idle(report):
                log.info("Nothing queued or running: worker is idle, exiting")
                return
            self.wait_for_work(stop, report)

    def idle(self, report: PassReport) -> bool:
        """Nothing left for a worker run `--until-idle`: nothing queued or running
        anywhere, no record to write, no waiting job to settle (a dead worker's is taken
        over after its lease)."""
        return report.queued == 0 and report.running_anywhere == 0 \
            and not self.executor.active() and not self.writes.pending() \
            and not self.deps.unsettled()

    def wait_for_work(self, stop: threading.Event, report: PassReport) -> None:
        """Sleep until the next pass is due: one poll interval, or sooner when a running
        job ends (its slot is refilled at once), a cancel is asked for, or, when the last
        pass left nothing in the queue, a job is submitted. (At the cap, a submission
        cannot start before a job ends, so it does not cut the sleep short then.)"""
        deadline = self.clock() + self.settings.poll_interval
        while not stop.is_set():
            left = deadline - self.clock()
            if left <= 0 or self.wake.wait(min(WATCH_EVERY, left)) or self.new_work(report):
                return

    def new_work(self, report: PassReport) -> bool:
        """Whether the store changed since the last pass (`report`) in a way a pass
        should act on now: a cancel request came or went, or a job was submitted while
        the queue was left empty; or an outcome waits to be collected (an executor that
        says so: `outcomes_waiting()`)."""
        waiting = getattr(self.executor, "outcomes_waiting", None)  # optional
        if waiting is not None and waiting():
            return True
        if self.store.cancels.pending() != self._cancels_seen \
                or self.store.waiting.settled() != self.deps.seen:
            return True
        return report.queued == 0 and not self.store.queue.is_empty()

    # ------------------------------------------------------------------ pass
    def run_once(self) -> PassReport:
        # Cleared before the pass, not after the wait: a job ending during the pass (or
        # between the wait and the pass) then wakes the next wait at once.
        self.wake.clear()
        began = time.perf_counter()
        report = PassReport()
        every = self.settings.index_sync_seconds
        if every and self.clock() - self._last_sync >= every:
            self._sync_index()
        else:
            self.index.refresh()
        outcomes, self._unrecorded = self._unrecorded + self.executor.collect(), []
        for i, outcome in enumerate(outcomes):
            try:
                self._record(outcome)
            except OSError:
                self._unrecorded = outcomes[i:]  # recorded at a later pass
                raise
            report.finished.append(outcome.job_id)
        for update in self.executor.updates():
            self._apply(update)
        self._handle_cancels(report)
        report.cancelled += self.deps.settle().cancelled  # waiting jobs whose parents ended
        self._recover_dead(report)
        self._launch(report)
        # Strays come only from a store error; and a job whose final record and marker
        # removal are still queued for the write-behind thread is not one.
        if self.store_errors != self._strays_checked and self.writes.pending() == 0:
            self._requeue_strays()
            self._strays_checked = self.store_errors
        if self.clock() - self._last_beat >= BEAT_EVERY:
            active = len(self._claimed)
            self.writes.submit(lambda: self.heartbeats.beat(active))
            self._last_beat = self.clock()
        markers = self.store.queue.running_markers()
        report.running_anywhere = len(markers)
        running, _ = self.owners.running(markers)
        queued = self.fair.queued_by_owner
        report.owners = {o: (running[o], queued[o]) for o in sorted(set(running) | set(queued))}
        self._health()
        self.last_pass_finished = self.clock()
        self.observer.pass_done(report, time.perf_counter() - began)
        return report

    def _launch(self, report: PassReport) -> None:
        keys = self.store.queue.queued()
        report.queued = len(keys)
        self.fair.sync(keys, self.store.queue.generation)
        if not keys:
            return  # free_slots() may cost an API call (Kubernetes): only when needed
        free = self.executor.free_slots()
        if free <= 0:
            return
        log.info("Found %d queued jobs", len(keys))
        if len(self.fair.queued_by_owner) > 1:  # whose: the turns the pass will give
            log.info("Queued by owner: %s", by_owner(self.fair.queued_by_owner))
        placement = self._placement()
        running, running_groups = self.owners.running(self._holding_slots())
        self.fair.set_running(running, running_groups)
        while free > 0:
            chosen = self.fair.next()
            if chosen is None:
                break
            key, tag = chosen
            claimed = self.store.queue.claim(key, self.instance, placement,
                                       write=isinstance(self.writes, Inline))
            if claimed is None:
                self.fair.undo(tag)
                continue
            if not self._within_limit(claimed, tag):
                continue
            if self.store.cancels.requested(key.job_id):
                self.fair.undo(tag)
                self._finish(claimed, claimed.record.cancelled_by_user(started=False))
                report.cancelled.append(key.job_id)
                continue
            if not isinstance(self.writes, Inline):
                # Queued before any outcome of this job can be: written first (FIFO).
                self.writes.submit(functools.partial(self.store.write, claimed.record))
            log.info("Starting execution for job %s", key.job_id)
            self._claimed[key.job_id] = claimed
            try:
                self.executor.launch(claimed)
            except Exception as exc:  # one bad job never stops the others
                log.exception("Could not launch job %s", key.job_id)
                del self._claimed[key.job_id]
                self.fair.undo(tag)
                self._finish(claimed, claimed.record.evolve(
                    status=Status.FAILED, finished_at=utcnow(),
                    error=JobError(type=ErrorType.infrastructure_error,
                                   message=f"could not launch: {exc}")))
                continue
            report.launched.append(key.job_id)
            self.observer.job_started(claimed.record)
            report.queued -= 1
            free -= 1

    def _holding_slots(self) -> list[RunningMarker]:
        """The running markers of the jobs that hold a slot now, what the fair share
        counts: every other instance's, and of this one's only the jobs its executor
        still calculates. A job of ours whose calculation has ended keeps its marker
        until its outcome is written (behind the pass, for the local worker); counted,
        it would hand the slot it freed to the other owner, and the shares would drift
        by several jobs (tests/integration/core/test_fairshare_workers.py)."""
        holding = self.executor.holding()
        return [m for m in self.store.queue.running_markers()
                if m.instance != self.instance
                or (m.job_id in self._claimed and m.job_id in holding)]

    def _within_limit(self, claimed: Claimed, tag: Tag) -> bool:
        """With a limit on the owner's running jobs, count them afresh after the claim
        (other workers claim too): over the limit, the claim is given back and the
        owner gets no more slots in this pass. Two workers racing for an owner's last
        slot may both give theirs back; neither ever takes the owner past the limit."""
        limit = self.policy.running_limit(tag.owner)
        if limit is None:
            return True
        self.owners.remember(claimed.record.job_id, tag)
        running, _ = self.owners.running(self.store.queue.running_markers())
        if running[tag.owner] <= limit:
            return True
        log.info("Job %s: %s already runs %d jobs (limit %d): back in the queue",
                 claimed.record.job_id, tag.owner, running[tag.owner] - 1, limit)
        self.store.queue.requeue(claimed.record, claimed.marker, count_attempt=False)
        self.fair.undo(tag)
        self.fair.exclude(tag.owner)
        return False

    def _store_failed(self, exc: OSError, doing: str) -> None:
        """Count and log a store error (from the pass, or the record-writer thread)."""
        with self._errors_lock:
            self.store_errors += 1
        what = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        self.last_store_error = f"{what}{where}"
        log.error("Job store error during %s: %s%s; nothing is lost, retrying in %gs",
                  doing, what, where, self.settings.poll_interval)

    # ---------------------------------------------------------------- health
    def _health(self) -> None:
        now = self.clock()
        if now - self._last_health >= self.settings.health_check_interval:
            self._last_health = now
            log.info("Health check: active_jobs=%d, status=healthy, worker=%s",
                     len(self._claimed), self.settings.worker_id)
