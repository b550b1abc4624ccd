"""A watch-fed view of one release's runner Jobs: what the cap counts, without a LIST.

Pure (no I/O, no client, no threads): fed with full listings (`replace`) and watch
events (`apply`) by controller/k8s/watch.py, asked by the executor under its lock.

What it keeps, per Job name:
- every Job of the release: a small `JobState` (a few hundred bytes; a namespace
  holding 10,000 finished Jobs within their TTL costs a few MB and no work per pass);
- the whole body only of the Jobs that still matter: unfinished ones, finished ones
  whose outcome is not recorded yet (they carry qforge's finalizer), and the ones the
  owner says it tracks (`keep`).

The cap counts the Jobs that hold a slot (unfinished by their own status) plus the
Jobs created (or being created) that no listing or event has shown yet, so a burst of
launches cannot overshoot the cap while the watch catches up. The slot counter is kept
incrementally: asking costs O(1), whatever the number of finished Jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from qforge.k8s import naming

__all__ = ["JobState", "JobView", "holds_slot"]


def holds_slot(job: Mapping[str, Any]) -> bool:
    """A Job holds a slot until its pod has ended: until the Job controller counts the
    pod succeeded, or the Job has a terminal condition (a failed pod may still be
    replaced, after a disruption, until the Job says Failed)."""
    status = job.get("status") or {}
    if int(status.get("succeeded") or 0) >= 1:
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed", "SuccessCriteriaMet") \
                and str(cond.get("status")) == "True":
            return False
    return True


@dataclass(frozen=True, slots=True)
class JobState:
    job_id: str | None
    holding: bool  # counts against the cap
    finalizer: bool  # qforge's finalizer is on it: its outcome is not recorded yet
    deleting: bool  # deletionTimestamp set (deleted by a user, a cancel or its TTL)


class JobView:
    def __init__(self, keep: Callable[[str], bool] | None = None) -> None:
        # Bodies of finished Jobs kept besides the finalizer's: the owner's tracked ones.
        self._keep = keep or (lambda name: False)
        self._jobs: dict[str, JobState] = {}
        self._bodies: dict[str, dict[str, Any]] = {}
        self._holding: set[str] = set()
        # Creates not seen yet: name -> when the create was answered (None: in flight).
        self._pending: dict[str, float | None] = {}
        self.synced = False  # a full listing has been applied

    # ------------------------------------------------------------- feeds
    def apply(self, kind: str, body: dict[str, Any]) -> JobState | None:
        """One watch event (ADDED, MODIFIED, DELETED). Returns the Job's new state, None
        once deleted."""
        name = str((body.get("metadata") or {}).get("name") or "")
        if not name:
            return None
        self._pending.pop(name, None)
        if kind == "DELETED":
            self._forget(name)
            return None
        meta = body.get("metadata") or {}
        state = JobState(
            job_id=naming.job_id_from_metadata(meta),
            holding=holds_slot(body),
            finalizer=naming.FINALIZER in (meta.get("finalizers") or ()),
            deleting=bool(meta.get("deletionTimestamp")),
        )
        self._jobs[name] = state
        if state.holding:
            self._holding.add(name)
        else:
            self._holding.discard(name)
        if state.holding or state.finalizer or self._keep(name):
            self._bodies[name] = body
        else:
            self._bodies.pop(name, None)
        return state

    def replace(self, bodies: Iterable[dict[str, Any]], listed_at: float) -> set[str]:
        """A full listing (started at `listed_at`): the truth from then on. Returns the
        names of the Jobs that were known and are gone. A Job created after the listing
        started and not in it stays pending."""
        before = set(self._jobs)
        self._jobs.clear()
        self._bodies.clear()
        self._holding.clear()
        for body in bodies:
            self.apply("ADDED", body)
        for name, answered in list(self._pending.items()):
            # Absent from a listing that began after its create was answered: deleted
            # since. A create still in flight (queued behind the writers or the token
            # bucket) may commit after the listing's snapshot: it keeps its slot.
            if answered is not None and answered < listed_at:
                del self._pending[name]
        self.synced = True
        return before - set(self._jobs)

    def expect(self, name: str, now: float) -> None:
        """A create of `name` is about to be sent: it holds a slot from now on."""
        del now  # the slot is held until an event or a later listing shows the Job
        if name not in self._jobs:
            self._pending[name] = None

    def created(self, name: str, now: float) -> None:
        """The API server took the create of `name` (at `now`); until the watch shows
        the Job it still holds its slot."""
        if name in self._pending:
            self._pending[name] = now

    def unexpect(self, name: str) -> None:
        """The create was refused: the Job does not exist."""
        self._pending.pop(name, None)

    def drop_body(self, name: str) -> None:
        """Forget a Job's body (it is stale): the next user reads it from the API."""
        self._bodies.pop(name, None)

    def _forget(self, name: str) -> None:
        self._jobs.pop(name, None)
        self._bodies.pop(name, None)
        self._holding.discard(name)

    # ------------------------------------------------------------ answers
    def unfinished(self) -> int:
        """Slots taken: unfinished Jobs plus creates not seen yet. O(1)."""
        return len(self._holding) + len(self._pending)

    def state(self, name: str) -> JobState | None:
        return self._jobs.get(name)

    def body(self, name: str) -> dict[str, Any] | None:
        return self._bodies.get(name)

    def pending(self, name: str) -> bool:
        return name in self._pending

    def known(self) -> int:
        return len(self._jobs)

    def states(self) -> Iterator[tuple[str, JobState]]:
        return iter(self._jobs.items())

    def unrecorded(self) -> list[tuple[str, JobState]]:
        """Jobs that still carry qforge's finalizer and no longer hold a slot, or are
        being deleted (their outcome may need recording, or the finalizer removing)."""
        return [(n, s) for n, s in self._jobs.items()
                if s.finalizer and (not s.holding or s.deleting)]
