"""Dependencies in the scheduling core (docs/ensembles.md): jobs that wait for others.

A waiting job (qforge.store.waiting) is released or ended by the pass that finds one of
its parents signalled in `settle/`. The decision is `decide`, a pure function of the
parents' records — one rule for every dependent, the best of its parents:

- a parent not ended yet: it waits;
- every parent ended and at least one COMPLETED: it is released to the queue, starting
  from the optimised geometry (result.json) of the lowest-energy COMPLETED parent (its
  input geometry for a parent that did not optimise);
- every parent ended and none COMPLETED (or gone): it ends CANCELLED, the message
  naming each parent and how it ended.

With one parent (`--then-for all`) that is DESIGN's rule: the parent COMPLETED releases
it, FAILED or CANCELLED cancels it. With a molecule's conformers as parents
(`--then-for best`), a failed conformer does not cancel the follow-up unless none
completed.

Settling a job is done after taking it (`WaitingIndex.take`: one winner among several
schedulers); every step is ordered so that a crash leaves the job taken by a dead (or
restarted) instance, and settling it again from its record finishes the work: the
geometry written to input.xyz and the record are the same whoever writes them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from qforge.record import JobRecord, Status
from qforge.store.errors import CorruptRecord, JobNotFound
from qforge.store.jobstore import JobStore, load_report
from qforge.store.layout import RunningMarker
from qforge.store.queue import make_done_marker
from qforge.store.waiting import is_waiting
from qforge_runner.atomic import write_text_atomic
from qforge_runner.molecule import Molecule
from qforge_runner.result import ErrorType, JobError
from qforge_runner.spec import Task
from qforge_runner.timestamps import utcnow

log = logging.getLogger(__name__)

# Releasing markers of other instances are looked at this often (seconds).
RECOVER_EVERY = 1.0


@dataclass(frozen=True)
class Wait:
    pending: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    parent: JobRecord  # the one it starts from


@dataclass(frozen=True)
class Cancel:
    message: str


Decision = Wait | Release | Cancel


def energy_of(record: JobRecord) -> float | None:
    if record.result is not None and math.isfinite(record.result.energy):
        return record.result.energy
    return None


def decide(parents: Mapping[str, JobRecord | None]) -> Decision:
    """What to do with a waiting job, from its parents' records (None: gone)."""
    pending = tuple(p for p, r in parents.items() if r is not None and not r.status.terminal)
    if pending:
        return Wait(pending)
    completed = [r for r in parents.values()
                 if r is not None and r.status is Status.COMPLETED and energy_of(r) is not None]
    if completed:
        return Release(min(completed, key=lambda r: (energy_of(r), r.job_id)))
    return Cancel(cancel_message(parents))


def cancel_message(parents: Mapping[str, JobRecord | None]) -> str:
    parts = []
    for job_id, record in parents.items():
        if record is None:
            parts.append(f"{job_id} no longer exists")
            continue
        why = f" ({record.error.type}: {record.error.message})" if record.error else ""
        parts.append(f"{job_id} {record.status.value}{why}")
    if len(parts) == 1:
        return f"not run: the job it depends on, {parts[0]}"
    return f"not run: none of the {len(parts)} jobs it depends on completed: " + \
        "; ".join(parts)


def start_geometry(store: JobStore, parent: JobRecord) -> Molecule | str:
    """The geometry a follow-up of `parent` starts from: the optimised one (result.json)
    for an optimisation, else the parent's own input; a sentence when it cannot be had."""
    if parent.spec.task not in (Task.opt, Task.ohess):
        return parent.spec.molecule
    report = load_report(store.layout.job_dir(parent.job_id))
    if report is None or report.result is None or report.result.geometry is None:
        return (f"not run: the optimised geometry of {parent.job_id} (result.json) is "
                f"missing or unreadable")
    return report.result.geometry


@dataclass
class SettleReport:
    released: list[str]
    cancelled: list[str]


class Dependencies:
    """The settling of waiting jobs, for one scheduler instance."""

    def __init__(self, store: JobStore, instance: str,
                 dead: Callable[[set[str]], set[str]],
                 clock: Callable[[], float],
                 on_finished: Callable[[JobRecord], None] = lambda r: None) -> None:
        self.store = store
        self.instance = instance
        self._dead = dead
        self._clock = clock
        self._on_finished = on_finished
        self._last_recover = -1e18
        self.seen: list[str] = []  # the settle listing at the last pass

    def adopt_own(self) -> None:
        """At start: jobs this instance (a stable name: a restarted controller) was
        settling when it stopped are settled again."""
        for marker in self.store.waiting.releasing_markers():
            if marker.instance == self.instance:
                self._settle_taken(marker, SettleReport([], []))

    def settle(self) -> SettleReport:
        """The pass's part: every signalled parent's dependents settled; a releasing
        marker of a dead instance taken over, or one of this instance's left by a store
        error, settled again (at most every RECOVER_EVERY)."""
        report = SettleReport([], [])
        waiting = self.store.waiting
        if self._clock() - self._last_recover >= RECOVER_EVERY:
            self._last_recover = self._clock()
            self._recover(report)
        for parent in waiting.settled():
            finished = True
            for child in waiting.dependents(parent):
                marker = waiting.take(child, self.instance)
                if marker is not None:
                    self._settle_taken(marker, report)
                elif not self._stale_edge(parent, child):
                    finished = False  # another instance has it now: looked at again
            if finished:
                waiting.done_settling(parent)
        self.seen = waiting.settled()
        return report

    def unsettled(self) -> bool:
        """Whether settling work is left in the store: a signalled parent, or a waiting
        job being settled (by anyone: a dead instance's is taken over after its lease).
        A worker run `--until-idle` is not idle while there is."""
        waiting = self.store.waiting
        return waiting.has_settled() or bool(waiting.releasing_markers())

    def cancel(self, job_id: str) -> JobRecord | None:
        """A user's cancel of a waiting job (the cancel request is in the store)."""
        marker = self.store.waiting.take(job_id, self.instance)
        if marker is None:
            return None
        report = SettleReport([], [])
        return self._settle_taken(marker, report)

    # ---------------------------------------------------------------- one job
    def _settle_taken(self, marker: RunningMarker, report: SettleReport) -> JobRecord | None:
        store, waiting = self.store, self.store.waiting
        try:
            child = store.read(marker.job_id)
        except (JobNotFound, CorruptRecord) as exc:
            log.error("Job %s: dropped from the waiting jobs: %s", marker.job_id, exc)
            waiting.drop_releasing(marker)
            return None
        if not is_waiting(child):  # settled before a crash: the markers its record implies
            if child.status is Status.QUEUED:
                store.repair.ensure_queued(child)
            elif child.status.terminal:
                store.repair.ensure_done(child)
            waiting.drop(child.job_id, child.depends_on)
            waiting.drop_releasing(marker)
            return None
        if store.cancels.requested(child.job_id):
            return self._end(marker, child.cancelled_by_user(started=False), report)
        decision = decide({p: self._read(p) for p in child.depends_on})
        if isinstance(decision, Wait):
            waiting.give_back(marker)
            return None
        if isinstance(decision, Cancel):
            return self._end(marker, self._cancelled(child, decision.message), report)
        geometry = start_geometry(store, decision.parent)
        if isinstance(geometry, str):
            return self._end(marker, self._cancelled(child, geometry), report)
        spec = child.spec.model_copy(update={"molecule": geometry})
        write_text_atomic(store.layout.job_dir(child.job_id) / "input.xyz",
                          geometry.to_xyz())
        released = child.evolve(spec=spec, waiting_reason=None)
        store.write(released)
        store.repair.ensure_queued(released)
        waiting.drop(child.job_id, child.depends_on)
        waiting.drop_releasing(marker)
        log.info("Job %s released: starts from %s's geometry", child.job_id,
                 decision.parent.job_id)
        report.released.append(child.job_id)
        return released

    def _end(self, marker: RunningMarker, record: JobRecord,
             report: SettleReport) -> JobRecord:
        store = self.store
        store.write(record)
        make_done_marker(store.layout, record)  # signals the jobs waiting for it
        store.waiting.drop(record.job_id, record.depends_on)
        store.waiting.drop_releasing(marker)
        store.cancels.clear(record.job_id)
        log.info("Job %s cancelled: %s", record.job_id,
                 record.error.message if record.error else "")
        report.cancelled.append(record.job_id)
        self._on_finished(record)
        return record

    @staticmethod
    def _cancelled(child: JobRecord, message: str) -> JobRecord:
        return child.evolve(status=Status.CANCELLED, finished_at=utcnow(),
                            error=JobError(type=ErrorType.cancelled, message=message))

    def _read(self, job_id: str) -> JobRecord | None:
        try:
            return self.store.read(job_id)
        except (JobNotFound, CorruptRecord):
            return None

    def _stale_edge(self, parent: str, child: str) -> bool:
        """An edge whose child is not waiting (settled before a crash, gone) is
        removed: True. False when another instance is settling the child."""
        if any(m.job_id == child for m in self.store.waiting.releasing_markers()):
            return False
        record = self._read(child)
        if record is not None and is_waiting(record):
            self.store.waiting.ensure(record)  # given back this instant, or its marker lost
            return False
        (self.store.waiting.after / parent / child).unlink(missing_ok=True)
        return True

    def _recover(self, report: SettleReport) -> None:
        markers = self.store.waiting.releasing_markers()
        if not markers:
            return
        others = {m.instance for m in markers} - {self.instance}
        dead = self._dead(others) if others else set()
        for marker in markers:
            if marker.instance == self.instance:
                # one of ours left by a store error mid-way (nothing is settled between
                # passes): settled again
                self._settle_taken(marker, report)
            elif marker.instance in dead:
                mine = self.store.waiting.take_over(marker, self.instance)
                if mine is not None:
                    log.warning("Job %s: %s stopped while settling it; settled here",
                                marker.job_id, marker.instance)
                    self._settle_taken(mine, report)
