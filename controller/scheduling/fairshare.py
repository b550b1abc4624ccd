"""Fair share between owners: which queued job gets the next free slot.

The next slot goes to the owner with the least running work relative to their share
(running jobs / weight; weights from FAIR_SHARE_WEIGHTS, 1 by default), then, within
that owner, to the group with the fewest running jobs, then by priority, then first
come first served. Ties between owners (or groups) go to the job that is first in the
plain priority-then-FIFO order. An owner at their OWNER_MAX_RUNNING gets no slot; an
owner alone on the system gets every slot.

`FairQueue` keeps one heap of queue keys per (owner, group), fed with the keys that
appeared since the last pass (a job's owner and group come from `Owners`, one record
read per job); keys that left the queue are dropped lazily when they reach the top of
their heap. A pass builds a heap over the owners with work (O(owners + groups)) and
each slot costs O(log owners + log groups + log queued): the choice does not grow with
the number of queued jobs of an owner (bench/bench_fairshare.py).
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
    """The queue of one scheduler, per owner and group (see the module docstring)."""

    def __init__(self, owners: Owners) -> None:
        self.owners = owners
        self._generation: int | None = None
        self._live: dict[str, QueueKey] = {}  # job id -> its key, as last listed
        self._tags: dict[str, Tag] = {}  # job id -> tag, of the live keys in heaps
        self._heaps: dict[str, dict[str | None, list[QueueKey]]] = {}
        self._entries = 0  # keys in all heaps, live or not
        self._pending: set[str] = set()  # live, but their record could not be read yet
        self._dirty = False  # keys were taken since the last sync
        self.queued_by_owner: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._tags)

    def sync(self, keys: list[QueueKey], generation: int) -> None:
        """Take in the queue as listed (`JobStore.queue.queued()` and its generation):
        nothing to do when the generation has not moved and no record was missing."""
        if generation == self._generation and not self._pending and not self._dirty:
            return
        self._generation, self._dirty = generation, False
        old = self._live
        live = {k.job_id: k for k in keys}
        self._live = live
        for job_id in old.keys() - live.keys():
            self._forget(job_id)
        self._pending = set()
        for key in keys:
            # new, changed, unreadable before, or taken by a pass but still listed (its
            # claim was lost or undone)
            if old.get(key.job_id) != key or key.job_id not in self._tags:
                self._add(key)
        self.owners.prune(live.keys(), len(live))
        if self._entries > 2 * len(self._tags) + 1024:
            self._compact()

    def _forget(self, job_id: str) -> None:
        self._pending.discard(job_id)
        tag = self._tags.pop(job_id, None)
        if tag is not None:
            self.queued_by_owner[tag.owner] -= 1
            if not self.queued_by_owner[tag.owner]:
                del self.queued_by_owner[tag.owner]

    def _add(self, key: QueueKey) -> None:
        tag = self.owners.tag(key.job_id)
        if tag is None:
            self._pending.add(key.job_id)
            return
        if key.job_id not in self._tags:
            self.queued_by_owner[tag.owner] += 1
        self._tags[key.job_id] = tag
        heapq.heappush(self._heaps.setdefault(tag.owner, {}).setdefault(tag.group, []), key)
        self._entries += 1

    def _compact(self) -> None:
        """Rebuild the heaps from the live keys (many keys left the queue unseen)."""
        heaps: dict[str, dict[str | None, list[QueueKey]]] = {}
        for job_id, tag in self._tags.items():
            heaps.setdefault(tag.owner, {}).setdefault(tag.group, []).append(
                self._live[job_id])
        for groups in heaps.values():
            for heap in groups.values():
                heapq.heapify(heap)
        self._heaps = heaps
        self._entries = len(self._tags)

    def _head(self, owner: str, group: str | None) -> QueueKey | None:
        """The first live key of a heap (dropping those that left the queue)."""
        groups = self._heaps.get(owner)
        heap = groups.get(group) if groups is not None else None
        while heap:
            key = heap[0]
            if self._live.get(key.job_id) == key and key.job_id in self._tags:
                return key
            heapq.heappop(heap)
            self._entries -= 1
        if groups is not None and heap is not None:
            del groups[group]
            if not groups:
                del self._heaps[owner]
        return None

    def _take(self, owner: str, group: str | None) -> QueueKey:
        key = heapq.heappop(self._heaps[owner][group])
        self._entries -= 1
        self._forget(key.job_id)
        self._dirty = True
        return key

    def queued_tags(self) -> Mapping[str, Tag]:
        """job id -> Tag of every queued job whose record was read."""
        return self._tags

    def chooser(self, running: Mapping[str, int], running_groups: Mapping[Tag, int],
                policy: Policy) -> Chooser:
        return Chooser(self, running, running_groups, policy)


class Chooser:
    """One pass's choices: `next()` gives the key for the next free slot and counts it
    running; `undo()` when it did not start after all (claimed by another worker)."""

    def __init__(self, queue: FairQueue, running: Mapping[str, int],
                 running_groups: Mapping[Tag, int], policy: Policy) -> None:
        self.queue = queue
        self.policy = policy
        self.running: Counter[str] = Counter(running)
        self.running_groups: Counter[Tag] = Counter(running_groups)
        self._groups: dict[str, list[tuple[int, QueueKey, str | None]]] = {}
        self._owners: list[tuple[float, QueueKey, str]] = []
        for owner in list(queue._heaps):
            self._push_owner(owner, fresh=True)

    def _group_heap(self, owner: str, fresh: bool) -> list[tuple[int, QueueKey, str | None]]:
        if fresh:
            entries = []
            for group in list(self.queue._heaps.get(owner, {})):
                head = self.queue._head(owner, group)
                if head is not None:
                    entries.append((self.running_groups[Tag(owner, group)], head, group))
            heapq.heapify(entries)
            self._groups[owner] = entries
        return self._groups[owner]

    def _push_owner(self, owner: str, *, fresh: bool = False) -> None:
        limit = self.policy.running_limit(owner)
        if limit is not None and self.running[owner] >= limit:
            return
        groups = self._group_heap(owner, fresh)
        if groups:
            share = self.running[owner] / self.policy.weight(owner)
            heapq.heappush(self._owners, (share, groups[0][1], owner))

    def next(self) -> tuple[QueueKey, Tag] | None:
        """The next job to start and its tag; None when no owner may start one."""
        if not self._owners:
            return None
        _, _, owner = heapq.heappop(self._owners)
        groups = self._groups[owner]
        n, _, group = heapq.heappop(groups)
        key = self.queue._take(owner, group)
        tag = Tag(owner, group)
        self.running[owner] += 1
        self.running_groups[tag] = n + 1
        head = self.queue._head(owner, group)
        if head is not None:
            heapq.heappush(groups, (n + 1, head, group))
        self._push_owner(owner)
        return key, tag

    def undo(self, tag: Tag) -> None:
        """A job `next()` gave did not start: it no longer counts as running."""
        self.running[tag.owner] -= 1
        self.running_groups[tag] -= 1

    def exclude(self, owner: str) -> None:
        """Give `owner` no more slots in this pass (found at their running limit)."""
        self._owners = [e for e in self._owners if e[2] != owner]
        heapq.heapify(self._owners)
