"""The local executor: xtb through the runner harness, in threads of this process.

No new Python interpreter per job: a thread calls `qforge_runner.harness.run_job`,
which starts xtb in its own process group and kills that whole group on timeout or
cancel.

The cap counts calculations: a slot is freed the moment xtb exits, while the job's
results are still being written and synced, so the next calculation does not wait for
the disk. At most `max_concurrent_jobs` xtb processes run at once; a job saving its
results is still RUNNING in the store for those few milliseconds.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from qforge.record import JobRecord
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.harness import RESULTS_UNWRITABLE, RunConfig, run_job
from qforge_runner.result import ErrorType, JobError, RunReport

log = logging.getLogger(__name__)


class LocalExecutor:
    kind = "local"
    others_may_recover = True  # its xtb processes die with it

    def __init__(self, store: JobStore, settings: Settings, *, xtb: str = "xtb") -> None:
        self.store = store
        self.settings = settings
        self.xtb = xtb
        # Twice the cap: one thread per calculation plus one per job saving its results.
        self._pool = ThreadPoolExecutor(
            max_workers=2 * settings.max_concurrent_jobs, thread_name_prefix="xtb"
        )
        self._lock = threading.Lock()
        self._running: dict[str, tuple[Future[RunReport], threading.Event]] = {}
        self._calculating: set[str] = set()
        self._stopping = False
        self._wake: threading.Event | None = None

    def attach(self, wake: threading.Event) -> None:
        self._wake = wake

    def free_slots(self) -> int:
        with self._lock:
            return max(0, self.settings.max_concurrent_jobs - len(self._calculating))

    def launch(self, claimed: Claimed) -> None:
        record = claimed.record
        cancel = threading.Event()
        timeout = record.spec.timeout or self.settings.job_timeout
        job_dir = self.store.layout.job_dir(record.job_id)
        scratch = self.settings.scratch
        future = self._pool.submit(
            self._run, job_dir, record, timeout, cancel, scratch
        )
        with self._lock:
            self._running[record.job_id] = (future, cancel)
            self._calculating.add(record.job_id)
        future.add_done_callback(self._done)

    def _calculation_ended(self, job_id: str) -> None:
        with self._lock:
            self._calculating.discard(job_id)
        if self._wake is not None:
            self._wake.set()

    def _done(self, _future: Future[RunReport]) -> None:
        """A job's results are saved: its outcome is ready to be collected. While
        another calculation runs, the pass its end triggers collects this outcome too
        (and the scheduler looks for waiting outcomes every `WATCH_EVERY` seconds):
        one pass per job instead of two, and one hand-over of the GIL fewer."""
        with self._lock:
            done = {jid for jid, (f, _) in self._running.items() if f.done()}
            self._calculating -= done
            calculating = bool(self._calculating)
        if self._wake is not None and not calculating:
            self._wake.set()

    def outcomes_waiting(self) -> bool:
        """Whether a job's outcome waits to be collected (a look at at most
        2 * max_concurrent_jobs futures)."""
        with self._lock:
            return any(f.done() for f, _ in self._running.values())

    def _run(self, job_dir: Path, record: JobRecord, timeout: float,
             cancel: threading.Event, scratch: Path | None) -> RunReport:
        config = RunConfig(
            scratch_root=scratch,
            timeout=timeout,
            xtb_timeout=self.settings.xtb_timeout,
            cancel=cancel,
            xtb=self.xtb,
            log=log,
            on_calculation_end=lambda: self._calculation_ended(record.job_id),
        )
        return run_job(job_dir, record.spec, config, job_id=record.job_id)

    def adopt(self, claimed: Claimed) -> bool:
        return False  # the xtb process died with the previous worker

    def updates(self) -> list[Update]:
        return []

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            entry = self._running.get(job_id)
        if entry is None:
            return False
        entry[1].set()
        return True

    def active(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def holding(self) -> set[str]:
        with self._lock:
            return set(self._calculating)

    def collect(self) -> list[Outcome]:
        with self._lock:
            done = [(jid, f) for jid, (f, _) in self._running.items() if f.done()]
            for jid, _ in done:
                del self._running[jid]
        return [self._outcome(jid, f) for jid, f in done]

    def _outcome(self, job_id: str, future: Future[RunReport]) -> Outcome:
        exc = future.exception()
        if exc is not None:
            return Outcome(job_id, error=JobError(
                type=ErrorType.infrastructure_error,
                message=f"the runner crashed: {type(exc).__name__}: {exc}",
            ))
        report = future.result()
        if self._stopping and report.error is not None \
                and report.error.type == ErrorType.cancelled:
            return Outcome(job_id, requeue=True)
        if report.error is not None and report.error.type == ErrorType.infrastructure_error \
                and report.error.message.startswith(RESULTS_UNWRITABLE):
            # the store could not take the results (full, read-only): run it again later
            log.error("Job %s: %s; back in the queue", job_id, report.error.message)
            return Outcome(job_id, requeue=True)
        return Outcome(job_id, report=report)

    def shutdown(self) -> list[Outcome]:
        """Interrupt running calculations; they go back to the queue."""
        self._stopping = True
        with self._lock:
            entries = list(self._running.items())
        for _, (_, cancel) in entries:
            cancel.set()
        self._pool.shutdown(wait=True)
        return self.collect()
