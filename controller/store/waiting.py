"""The waiting index: jobs that wait for others (follow-up steps, docs/ensembles.md).

A waiting job's record is QUEUED with `depends_on` and a `waiting_reason` (`is_waiting`);
it has no queue marker, so the queue stays O(queued) however many jobs wait. Its index
entries, all derived from records (IndexKeeper rebuilds them):

    .qforge/waiting/<child_id>                  one per waiting job (counted by `status`)
    .qforge/after/<parent_id>/<child_id>        one per parent of a waiting job
    .qforge/settle/<parent_id>                  a parent ended: look at its dependents
    .qforge/releasing/<child_id>+<instance>     a waiting job being released or ended

Whoever ends a job (`Queue.finish`, the repairs that make a done marker) signals it in
`settle/` when `after/<job_id>/` exists; a submitter whose parent had already ended
signals it after its commit (the submitter makes the edge, then reads the parent; the
finisher writes the parent, then looks for edges: one of the two sees the other).
A scheduler pass lists `settle/` (empty nearly always: one listing) and settles each
dependent after taking it: `rename(waiting/<child>, releasing/<child>+<instance>)` has
one winner, and a releasing marker left by a dead instance is taken over like a running
marker (qforge.scheduling.dependencies).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from qforge.record import JobRecord, Status
from qforge.store.files import touch
from qforge.store.layout import Layout, RunningMarker
from qforge.store.listings import Listings

# The words a waiting record's `waiting_reason` starts with (`qforge show`).
WAITING_FOR = "waiting for "


def is_waiting(record: JobRecord) -> bool:
    """Whether a record waits for its parents (not yet released to the queue)."""
    return (record.status is Status.QUEUED and bool(record.depends_on)
            and record.waiting_reason is not None)


def waiting_reason(parents: tuple[str, ...] | list[str]) -> str:
    """What a waiting job's record says until it is released."""
    many = len(parents) > 1
    return (f"{WAITING_FOR}{'jobs' if many else 'job'} {', '.join(parents)} "
            f"to finish")


class WaitingIndex:
    def __init__(self, layout: Layout, listings: Listings) -> None:
        self.layout = layout
        self._listings = listings
        index = layout.index
        self.waiting = index / "waiting"
        self.after = index / "after"
        self.settle = index / "settle"
        self.releasing = index / "releasing"

    # ------------------------------------------------------------ markers
    def ensure(self, record: JobRecord) -> bool:
        """Give a waiting record its markers (unless it is being released right now).
        Returns True if its waiting marker was made."""
        job_id = record.job_id
        for parent in record.depends_on:
            touch_in(self.after / parent, job_id)
        if any(m.job_id == job_id for m in self.releasing_markers()):
            return False
        path = self.waiting / job_id
        if path.exists():
            return False
        touch_in(self.waiting, job_id)
        return True

    def edge_paths(self, record: JobRecord) -> list[str]:
        """The markers a waiting job needs made before its folder appears (submission)."""
        return [f"{self.after}/{p}/{record.job_id}" for p in record.depends_on] + [
            f"{self.waiting}/{record.job_id}"]

    def drop(self, job_id: str, parents: tuple[str, ...]) -> None:
        """Remove a job's waiting marker and edges (released, ended, or not waiting)."""
        (self.waiting / job_id).unlink(missing_ok=True)
        for parent in parents:
            (self.after / parent / job_id).unlink(missing_ok=True)

    # ------------------------------------------------------------ signals
    def signal(self, job_id: str) -> bool:
        return signal_dependents(self.layout, job_id)

    def settled(self) -> list[str]:
        """Parents signalled and not yet dealt with (one listing; [] when none)."""
        try:
            return os.listdir(self.settle)
        except FileNotFoundError:
            return []

    def has_settled(self) -> bool:
        """Whether any parent is signalled: reads at most one entry."""
        try:
            with os.scandir(self.settle) as entries:
                return next(entries, None) is not None
        except FileNotFoundError:
            return False

    def done_settling(self, parent: str) -> None:
        (self.settle / parent).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty, or gone: either is fine
            (self.after / parent).rmdir()

    def dependents(self, parent: str) -> list[str]:
        try:
            return os.listdir(self.after / parent)
        except FileNotFoundError:
            return []

    def parents_with_dependents(self) -> list[str]:
        try:
            return os.listdir(self.after)
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------ queries
    def ids(self) -> list[str]:
        """The waiting jobs (one listing, reused while the folder is unchanged; jobs
        being released this instant are left out)."""
        return self._listings.names(self.waiting)

    def count(self) -> int:
        return len(self.ids())

    # ------------------------------------------------------------ taking
    def take(self, job_id: str, instance: str) -> RunningMarker | None:
        """Take a waiting job to settle it (one winner); None when another has it."""
        marker = RunningMarker(job_id, instance)
        try:
            os.rename(self.waiting / job_id, self._releasing_path(marker))
        except FileNotFoundError:
            if not self.releasing.is_dir():
                self.releasing.mkdir(parents=True, exist_ok=True)
                return self.take(job_id, instance)
            return None
        return marker

    def take_over(self, marker: RunningMarker, instance: str) -> RunningMarker | None:
        """A dead (or restarted) instance's releasing marker, moved to `instance`."""
        new = RunningMarker(marker.job_id, instance)
        try:
            os.rename(self._releasing_path(marker), self._releasing_path(new))
        except FileNotFoundError:
            return None
        return new

    def give_back(self, marker: RunningMarker) -> None:
        """Still waiting after all: the job's waiting marker again."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._releasing_path(marker), self.waiting / marker.job_id)

    def drop_releasing(self, marker: RunningMarker) -> None:
        self._releasing_path(marker).unlink(missing_ok=True)

    def releasing_markers(self) -> list[RunningMarker]:
        try:
            names = os.listdir(self.releasing)
        except FileNotFoundError:
            return []
        return [m for m in map(RunningMarker.parse, names) if m is not None]

    def _releasing_path(self, marker: RunningMarker) -> Path:
        return self.releasing / marker.name


def signal_dependents(layout: Layout, job_id: str) -> bool:
    """A job ended: when jobs wait for it, leave it in `settle/`. One stat when none
    do. Returns True when signalled."""
    if not (layout.index / "after" / job_id).is_dir():
        return False
    touch_in(layout.index / "settle", job_id)
    return True


def touch_in(folder: Path, name: str) -> None:
    """Create `folder/name`, making the folder when missing (it may be removed while
    empty by `done_settling`: retried)."""
    for _ in range(3):
        try:
            touch(folder / name)
            return
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
    touch(folder / name)
