"""The local executor: xtb runs as child processes of the worker, watched from its one
scheduling thread.

No thread and no new Python interpreter per job. `launch` starts xtb through the runner
harness's first step (`qforge_runner.harness.begin`: the scratch folder, then xtb in a
process group of its own) and returns. The scheduler then waits on the xtb processes'
pidfds and the store together (`wait_for_ends`): the moment an xtb exits, the next pass
reaps it (`collect`), which frees its calculation slot; the pass refills the slot, and
only then are the finished runs' results read and saved (`save_next`: the harness's
second step, `conclude`) and their records written, one job at a time: a slot that
frees meanwhile is refilled between two of them. At most `max_concurrent_jobs` xtb
processes run at once; a job whose results are being saved is still RUNNING in the
store for those few milliseconds.

Deadlines and cancels need no thread either: a job past its time limit, or one a user
cancels, gets SIGTERM to its process group, and SIGKILL `GRACE_SECONDS` later if it
still lives; the wait between passes is cut to the nearest of those moments.

A GFN-FF pre-optimisation (`spec.preopt_gfnff`, a rung of the retry ladder) is a
second, short xtb run before the job's own: `begin` runs it to its end (within the
job's time limit) before it starts the job's xtb, so the scheduling thread waits for it.
"""

from __future__ import annotations

import logging
import math
import select
import threading
import time
from dataclasses import dataclass

from qforge.record import JobRecord
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.harness import RESULTS_UNWRITABLE, Calculation, RunConfig, begin, conclude
from qforge_runner.process import GRACE_SECONDS, POLL_SECONDS, ProcessOutcome
from qforge_runner.result import ErrorType, JobError, RunReport

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """A launched job: its xtb calculating, or ended (reaped) and not yet saved."""

    record: JobRecord
    calc: Calculation
    deadline: float | None  # time.monotonic() by which xtb must have ended
    ended: bool = False  # xtb exited and was reaped (or never started): the slot is free
    proc: ProcessOutcome | None = None
    cancelled: bool = False
    timed_out: bool = False


class LocalExecutor:
    kind = "local"
    others_may_recover = True  # its xtb processes die with it

    def __init__(self, store: JobStore, settings: Settings, *, xtb: str = "xtb",
                 grace: float = GRACE_SECONDS) -> None:
        self.store = store
        self.settings = settings
        self.xtb = xtb
        self.grace = grace
        self._runs: dict[str, _Run] = {}  # launched and not yet saved
        self._saved: list[Outcome] = []  # saved, not yet collected
        self._poller = select.poll()
        self._fds: set[int] = set()  # the pidfds of the calculating jobs
        self._stopping = False

    def attach(self, wake: threading.Event) -> None:
        """Nothing to wake: the scheduler waits on the xtb processes themselves
        (`wait_for_ends`)."""

    # ------------------------------------------------------------ calculations
    def free_slots(self) -> int:
        return max(0, self.settings.max_concurrent_jobs - len(self.holding()))

    def launch(self, claimed: Claimed) -> None:
        record = claimed.record
        config = RunConfig(
            scratch_root=self.settings.scratch,
            timeout=record.spec.timeout or self.settings.job_timeout,
            xtb_timeout=self.settings.xtb_timeout,
            xtb=self.xtb,
            log=log,
        )
        calc = begin(self.store.layout.job_dir(record.job_id), record.spec, config,
                     job_id=record.job_id)
        child = calc.child
        run = _Run(record, calc, deadline=None if child is None or calc.deadline is None
                   else child.started + calc.deadline, ended=child is None)
        self._runs[record.job_id] = run
        if child is not None and child.fd is not None:
            self._poller.register(child.fd, select.POLLIN)
            self._fds.add(child.fd)

    def wait_for_ends(self, timeout: float) -> bool:
        """Sleep at most `timeout` seconds, until an xtb exits (its pidfd becomes
        readable); a deadline or a kill that falls due meanwhile is acted on. True when
        the next pass has work from this executor (a run to reap or to save, an outcome
        to collect)."""
        end = time.monotonic() + timeout
        while True:
            self._watch_limits()
            if self._due():
                return True
            now = time.monotonic()
            limit = end - now
            if limit <= 0:
                return False
            for run in self._calculating():
                child = run.calc.child
                assert child is not None
                if child.fd is None:  # no pidfd (an old kernel): look again soon
                    limit = min(limit, POLL_SECONDS)
                if child.stopping_since is not None:
                    limit = min(limit, child.stopping_since + self.grace - now)
                elif run.deadline is not None:
                    limit = min(limit, run.deadline - now)
            self._poller.poll(max(1, math.ceil(limit * 1000)))

    def _calculating(self) -> list[_Run]:
        return [run for run in self._runs.values() if not run.ended]

    def _due(self) -> bool:
        return bool(self._saved) or any(
            run.ended or (run.calc.child is not None and run.calc.child.exited())
            for run in self._runs.values())

    def _watch_limits(self) -> None:
        """SIGTERM to the jobs past their deadline; SIGKILL to those stopped `grace`
        seconds ago that still live."""
        now = time.monotonic()
        for run in self._calculating():
            child = run.calc.child
            assert child is not None
            if run.deadline is not None and now >= run.deadline and not run.cancelled \
                    and child.stopping_since is None:
                run.timed_out = True
                child.stop()
            child.kill_late(self.grace)

    def _reap(self) -> None:
        """Reap every xtb that exited: its slot is free from here on."""
        self._watch_limits()
        for run in self._calculating():
            child = run.calc.child
            assert child is not None
            if not child.exited():
                continue
            if child.fd is not None:
                self._poller.unregister(child.fd)
                self._fds.discard(child.fd)
            run.proc = child.reap(timed_out=run.timed_out, cancelled=run.cancelled)
            run.ended = True

    def save_next(self) -> bool:
        """Read and save the results of the run whose xtb ended first (the harness's
        `conclude`: parse, move xtb's files into the job folder, result.json, all
        fsynced); its outcome is then collected. False when no run has ended."""
        for job_id, run in self._runs.items():
            if run.ended:
                del self._runs[job_id]
                self._saved.append(self._outcome(job_id, run))
                return True
        return False

    def _outcome(self, job_id: str, run: _Run) -> Outcome:
        try:
            report = conclude(run.calc, run.proc)
        except Exception as exc:  # conclude never raises; a bug must not stop the others
            log.exception("Saving the results of job %s failed", job_id)
            return Outcome(job_id, error=JobError(
                type=ErrorType.infrastructure_error,
                message=f"the runner crashed: {type(exc).__name__}: {exc}",
            ))
        return self._verdict(job_id, report)

    def _verdict(self, job_id: str, report: RunReport) -> Outcome:
        if self._stopping and report.error is not None \
                and report.error.type == ErrorType.cancelled:
            return Outcome(job_id, requeue=True)
        if report.error is not None and report.error.type == ErrorType.infrastructure_error \
                and report.error.message.startswith(RESULTS_UNWRITABLE):
            # the store could not take the results (full, read-only): run it again later
            log.error("Job %s: %s; back in the queue", job_id, report.error.message)
            return Outcome(job_id, requeue=True)
        return Outcome(job_id, report=report)

    # ------------------------------------------------------------ the protocol
    def outcomes_waiting(self) -> bool:
        """Whether a run waits to be reaped, saved or collected."""
        return self._due()

    def adopt(self, claimed: Claimed) -> bool:
        return False  # the xtb process died with the previous worker

    def updates(self) -> list[Update]:
        return []

    def cancel(self, job_id: str) -> bool:
        run = self._runs.get(job_id)
        if run is None:
            return False
        if not run.ended and run.calc.child is not None:
            run.cancelled = True
            run.calc.child.stop()
        return True

    def active(self) -> set[str]:
        return set(self._runs) | {o.job_id for o in self._saved}

    def holding(self) -> set[str]:
        return {job_id for job_id, run in self._runs.items() if not run.ended}

    def collect(self) -> list[Outcome]:
        """Reap the xtb processes that exited (their slots are free) and hand over the
        outcomes saved so far; `save_next` saves the reaped ones, one at a time, after
        the pass refilled their slots."""
        self._reap()
        saved, self._saved = self._saved, []
        return saved

    def shutdown(self) -> list[Outcome]:
        """Stop running calculations (SIGTERM, SIGKILL after the grace); they go back
        to the queue."""
        self._stopping = True
        for run in self._calculating():
            run.cancelled = True
            assert run.calc.child is not None
            run.calc.child.stop()
        end = time.monotonic() + self.grace + 5
        while self._calculating() and time.monotonic() < end:
            self.wait_for_ends(min(POLL_SECONDS, max(0.0, end - time.monotonic())))
            self._reap()
        while self.save_next():
            pass
        return self.collect()
