"""Fair share between owners: which queued job gets the next free slot.

The next slot goes to the owner with the least running work relative to their share
(running jobs / weight; weights from FAIR_SHARE_WEIGHTS, 1 by default), then, within
that owner, to the group with the fewest running jobs, then by priority, then first
come first served. Ties between owners (or groups) go to the job that is first in the
plain priority-then-FIFO order. An owner at their OWNER_MAX_RUNNING gets no slot; an
owner alone on the system gets every slot.

`FairQueue` keeps, across passes, one heap of queue keys per (owner, group), fed with
the keys that appeared since the last pass (a job's owner and group come from `Owners`,
one record read per job; keys that left the queue are dropped lazily when they reach the
top of their heap), one heap of groups per owner ordered by (running jobs, first key)
and one heap of owners ordered by (running / weight, first key). An entry of the last
two carries a version: when an owner's or a group's running count or first key changes,
a new entry is pushed and the old one is skipped when it comes up. So a pass costs
O(changes) to take in what moved (new keys, running counts that changed: at most the
cap) and each slot O(log owners + log groups + log queued): the choice does not grow
with the number of queued jobs nor, beyond a logarithm, with the number of owners
(bench/bench_fairshare.py).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from qforge.scheduling.owners import Owners, Tag
from qforge.settings import Settings
from qforge.store.layout import QueueKey


@dataclass(frozen=True)
class Policy:
    """The weights and per-owner limits of the settings."""

    weights: Mapping[str, float] = field(default_factory=dict)
    max_running: int | None = None
    max_queued: int | None = None
    running_limits: Mapping[str, int | None] = field(default_factory=dict)
    queued_limits: Mapping[str, int | None] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        lim = settings.owner_limits
        return cls(
            weights=dict(settings.fair_share_weights),
            max_running=settings.owner_max_running,
            max_queued=settings.owner_max_queued,
            running_limits={o: v.max_running for o, v in lim.items()
                            if "max_running" in v.model_fields_set},
            queued_limits={o: v.max_queued for o, v in lim.items()
                           if "max_queued" in v.model_fields_set},
        )

    def weight(self, owner: str) -> float:
        return self.weights.get(owner, 1.0)

    def running_limit(self, owner: str) -> int | None:
        return self.running_limits.get(owner, self.max_running)

    def queued_limit(self, owner: str) -> int | None:
        return self.queued_limits.get(owner, self.max_queued)

    @property
    def limits_running(self) -> bool:
        """Whether any owner has a running limit (a claim is then checked afresh)."""
        return self.max_running is not None or any(
            v is not None for v in self.running_limits.values())


class FairQueue:
    """The queue of one scheduler, per owner and group (see the module docstring).

    Each pass: `sync()` the queue's listing, `set_running()` the running jobs per owner
    and group (every worker's, from the running markers), then `next()` for each free
    slot; `undo()` a job that did not start after all, `exclude()` an owner found at
    their limit by a fresh count."""

    def __init__(self, owners: Owners, policy: Policy | None = None, *,
                 slack: int = 1024) -> None:
        """`slack`: stale heap entries tolerated beyond the live ones before a heap
        is rebuilt."""
        self.owners = owners
        self.policy = policy or Policy()
        self._slack = slack
        self._generation: int | None = None
        self._live: dict[str, QueueKey] = {}  # job id -> its key, as last listed
        self._tags: dict[str, Tag] = {}  # job id -> tag, of the live keys in heaps
        self._keys: dict[Tag, list[QueueKey]] = {}  # (owner, group) -> heap of keys
        self._entries = 0  # keys in all heaps, live or not
        self._pending: set[str] = set()  # live, but their record could not be read yet
        self._dirty = False  # keys were taken since the last sync
        self.queued_by_owner: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.running_groups: Counter[Tag] = Counter()
        # owner -> heap of (running in the group, first key, group, version)
        self._groups: dict[str, list[tuple[int, QueueKey, str | None, int]]] = {}
        self._gver: dict[Tag, int] = {}
        # heap of (running / weight, first key, owner, version)
        self._owners: list[tuple[float, QueueKey, str, int]] = []
        self._over: dict[str, int] = {}
        self._excluded: set[str] = set()
        self._version = 0  # one counter for all entries: a version is never reused

    def __len__(self) -> int:
        return len(self._tags)

    # ------------------------------------------------------------ the queue
    def sync(self, keys: list[QueueKey], generation: int) -> None:
        """Take in the queue as listed (`JobStore.queue.queued()` and its generation):
        nothing to do when the generation has not moved, no record was missing and no
        key was taken since."""
        if generation == self._generation and not self._pending and not self._dirty:
            return
        self._generation, self._dirty = generation, False
        old = self._live
        live = {k.job_id: k for k in keys}
        self._live = live
        touched: set[Tag] = set()
        for job_id in old.keys() - live.keys():
            tag = self._forget(job_id)
            if tag is not None:
                touched.add(tag)
        self._pending = set()
        for key in keys:
            # new, changed, unreadable before, or taken by a pass but still listed (its
            # claim was lost or undone)
            if old.get(key.job_id) != key or key.job_id not in self._tags:
                tag = self._add(key)
                if tag is not None:
                    touched.add(tag)
        self.owners.prune(live.keys(), len(live))
        if self._entries > 2 * len(self._tags) + self._slack:
            self._compact()
        for tag in touched:
            self._refresh_group(tag)

    def _forget(self, job_id: str) -> Tag | None:
        self._pending.discard(job_id)
        tag = self._tags.pop(job_id, None)
        if tag is not None:
            self.queued_by_owner[tag.owner] -= 1
            if not self.queued_by_owner[tag.owner]:
                del self.queued_by_owner[tag.owner]
        return tag

    def _add(self, key: QueueKey) -> Tag | None:
        tag = self.owners.tag(key.job_id)
        if tag is None:
            self._pending.add(key.job_id)
            return None
        if key.job_id not in self._tags:
            self.queued_by_owner[tag.owner] += 1
        self._tags[key.job_id] = tag
        heapq.heappush(self._keys.setdefault(tag, []), key)
        self._entries += 1
        return tag

    def _compact(self) -> None:
        """Rebuild the key heaps from the live keys (many keys left the queue unseen)."""
        heaps: dict[Tag, list[QueueKey]] = {}
        for job_id, tag in self._tags.items():
            heaps.setdefault(tag, []).append(self._live[job_id])
        for heap in heaps.values():
            heapq.heapify(heap)
        self._keys = heaps
        self._entries = len(self._tags)

    def _head(self, tag: Tag) -> QueueKey | None:
        """The first live key of a group (dropping those that left the queue)."""
        heap = self._keys.get(tag)
        while heap:
            key = heap[0]
            if self._live.get(key.job_id) == key and self._tags.get(key.job_id) == tag:
                return key
            heapq.heappop(heap)
            self._entries -= 1
        self._keys.pop(tag, None)
        return None

    def queued_tags(self) -> Mapping[str, Tag]:
        """job id -> Tag of every queued job whose record was read."""
        return self._tags

    # ------------------------------------------------------------ the turns
    def _refresh_group(self, tag: Tag) -> None:
        """A group's running count or first key changed: its entry, then its owner's."""
        self._version += 1
        ver = self._gver[tag] = self._version
        head = self._head(tag)
        groups = self._groups.setdefault(tag.owner, [])
        if head is not None:
            heapq.heappush(groups, (self.running_groups[tag], head, tag.group, ver))
        elif self.running_groups[tag] == 0:
            del self._gver[tag]  # nothing queued or running: forgotten
        if len(groups) > 4 * len(self._keys) + self._slack:
            groups[:] = [e for e in groups if self._gver.get(Tag(tag.owner, e[2])) == e[3]]
            heapq.heapify(groups)
        self._refresh_owner(tag.owner)

    def _top_group(self, owner: str) -> tuple[int, QueueKey, str | None, int] | None:
        groups = self._groups.get(owner)
        while groups:
            entry = groups[0]
            if self._gver.get(Tag(owner, entry[2])) == entry[3]:
                return entry
            heapq.heappop(groups)
        self._groups.pop(owner, None)
        return None

    def _refresh_owner(self, owner: str) -> None:
        self._version += 1
        ver = self._over[owner] = self._version
        top = self._top_group(owner)
        limit = self.policy.running_limit(owner)
        if top is None or owner in self._excluded or (
                limit is not None and self.running[owner] >= limit):
            if top is None and not self.running[owner]:
                del self._over[owner]
            return
        share = self.running[owner] / self.policy.weight(owner)
        heapq.heappush(self._owners, (share, top[1], owner, ver))
        if len(self._owners) > 4 * len(self._over) + self._slack:
            self._owners = [e for e in self._owners if self._over.get(e[2]) == e[3]]
            heapq.heapify(self._owners)

    def set_running(self, by_owner: Mapping[str, int], by_group: Mapping[Tag, int]) -> None:
        """The running jobs now, per owner and per (owner, group): only the owners and
        groups whose count changed since the last call are placed again (the counts of
        a pass's own launches are already in)."""
        excluded, self._excluded = self._excluded, set()
        changed = {t for t in by_group.keys() | self.running_groups.keys()
                   if by_group.get(t, 0) != self.running_groups.get(t, 0)}
        owners = {o for o in by_owner.keys() | self.running.keys()
                  if by_owner.get(o, 0) != self.running.get(o, 0)} | excluded
        self.running = Counter({o: n for o, n in by_owner.items() if n})
        self.running_groups = Counter({t: n for t, n in by_group.items() if n})
        for tag in changed:
            self._refresh_group(tag)
            owners.discard(tag.owner)
        for owner in owners:
            self._refresh_owner(owner)

    def next(self) -> tuple[QueueKey, Tag] | None:
        """The next job to start and its tag, counted as running; None when no owner
        may start one."""
        while self._owners:
            _, _, owner, ver = heapq.heappop(self._owners)
            if self._over.get(owner) != ver:
                continue
            top = self._top_group(owner)
            if top is None:  # (cannot happen: an owner entry is made from a group's)
                continue
            tag = Tag(owner, top[2])
            key = self._head(tag)
            if key is None:  # (cannot happen: a group's entry is refreshed as it changes)
                self._refresh_group(tag)
                continue
            heapq.heappop(self._keys[tag])
            self._entries -= 1
            self._forget(key.job_id)
            self._dirty = True
            self.running[owner] += 1
            self.running_groups[tag] += 1
            self._refresh_group(tag)
            return key, tag
        return None

    def undo(self, tag: Tag) -> None:
        """A job `next()` gave did not start: it no longer counts as running."""
        self.running[tag.owner] -= 1
        self.running_groups[tag] -= 1
        self._refresh_group(tag)

    def exclude(self, owner: str) -> None:
        """Give `owner` no more slots until the next `set_running()` (found at their
        running limit by a fresh count)."""
        self._excluded.add(owner)
        self._refresh_owner(owner)
