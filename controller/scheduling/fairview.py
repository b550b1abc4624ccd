"""Fair share as people see it: running and queued jobs per owner, and why a job waits
("alice has 3 of 6 slots; bob's turn is next; position 4 among alice's jobs").

`fair_view` reads the store (the queue and running listings, and each job's owner once
through `Owners`); `waiting_words` and `next_owner` are pure functions of a `FairView`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from qforge.scheduling.fairshare import Policy
from qforge.scheduling.owners import Owners
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey


@dataclass(frozen=True)
class OwnerCount:
    running: int = 0
    queued: int = 0


@dataclass(frozen=True)
class FairView:
    """The slots and each owner's jobs at one moment."""

    cap: int  # the scheduler's cap (MAX_CONCURRENT_JOBS)
    running: Mapping[str, int]  # owner -> running jobs
    queued: Mapping[str, list[QueueKey]]  # owner -> queued keys in priority/FIFO order
    policy: Policy = field(default_factory=Policy)

    def counts(self) -> dict[str, OwnerCount]:
        """owner -> running and queued jobs, for every owner with either."""
        owners = sorted(set(self.running) | set(self.queued))
        return {o: OwnerCount(self.running.get(o, 0), len(self.queued.get(o, [])))
                for o in owners if self.running.get(o, 0) or self.queued.get(o)}


def owner_lines(counts: Mapping[str, OwnerCount]) -> list[str]:
    """`qforge status`'s table of running and queued jobs per owner."""
    if not counts:
        return []
    width = max(10, *(len(o) for o in counts))
    lines = [f"  {'owner':<{width}} {'running':>8} {'queued':>8}"]
    lines += [f"  {o:<{width}} {c.running:>8} {c.queued:>8}" for o, c in counts.items()]
    return lines


def next_owner(view: FairView) -> str | None:
    """Whose job takes the next free slot: the owner with queued jobs and under their
    limit with the least running work relative to their weight; a tie goes to the
    first job in priority/FIFO order. (Within an owner, groups then share the slot.)"""
    best: tuple[float, QueueKey, str] | None = None
    for owner, keys in view.queued.items():
        if not keys:
            continue
        running = view.running.get(owner, 0)
        limit = view.policy.running_limit(owner)
        if limit is not None and running >= limit:
            continue
        entry = (running / view.policy.weight(owner), keys[0], owner)
        if best is None or entry < best:
            best = entry
    return best[2] if best is not None else None


def waiting_words(view: FairView, owner: str, key: QueueKey) -> str:
    """Why the queued job `key` of `owner` waits, in fair-share terms."""
    running = view.running.get(owner, 0)
    words = [f"{owner} has {running} of {view.cap} slots"]
    limit = view.policy.running_limit(owner)
    if limit is not None and running >= limit:
        words.append(f"{owner} may run {limit} at once")
    after = next_owner(view)
    if after is not None:
        words.append(f"{after}'s turn is next")
    mine = view.queued.get(owner, [])
    position = 1 + sum(1 for k in mine if k < key)
    words.append(f"position {position} among {owner}'s jobs")
    return "; ".join(words)


def fair_view(store: JobStore, settings: Settings, owners: Owners | None = None) -> FairView:
    """The store's fair-share view now. Reads each queued and running job's record once
    per `owners` cache (a long-lived process passes its own, keeping later calls to
    the records of new jobs; a fresh one reads them all: O(queued + running))."""
    owners = owners or Owners.of(store)
    running, _ = owners.running(store.queue.running_markers())
    queued: dict[str, list[QueueKey]] = {}
    for key in store.queue.queued():  # in priority/FIFO order
        tag = owners.tag(key.job_id)
        if tag is not None:
            queued.setdefault(tag.owner, []).append(key)
    return FairView(settings.max_concurrent_jobs, Counter(running), queued,
                    Policy.from_settings(settings))
