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

import bisect
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


# A queue key in a heap: its fields first, so heaps compare plain tuples (in C), then
# the key itself (job ids are unique: never compared).
Item = tuple[int, int, str, QueueKey]


def by_owner(counts: Mapping[str, int], most: int = 5) -> str:
    """`counts` (owner -> queued jobs) for a log line, largest first (ties by name):
    "alice 1996, bob 10", the first `most` and then "and N more owners"."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    words = ", ".join(f"{owner} {n}" for owner, n in ranked[:most])
    rest = len(ranked) - most
    return words + (f", and {rest} more owner{'s' * (rest > 1)}" if rest > 0 else "")


def item(key: QueueKey) -> Item:
    return (key.rank, key.created_ns, key.job_id, key)


class _Run:
    """One group's queue keys in scheduling order: a sorted list read from `start`.
    Taking the first is O(1); new keys usually come after the others (first come first
    served) and are appended; one that comes before (a higher priority) is put in place
    by bisection, and many at once by one merge (timsort of two sorted runs)."""

    __slots__ = ("items", "start")

    def __init__(self, items: list[Item] | None = None) -> None:
        self.items: list[Item] = items or []
        self.start = 0

    def __len__(self) -> int:
        return len(self.items) - self.start

    def first(self) -> Item | None:
        return self.items[self.start] if self.start < len(self.items) else None

    def take(self) -> Item:
        first = self.items[self.start]
        self.start += 1
        if self.start > 64 and 2 * self.start > len(self.items):
            del self.items[:self.start]
            self.start = 0
        return first

    def add(self, new: list[Item]) -> None:
        """Put `new` (sorted) in place."""
        items = self.items
        if self.start:
            del items[:self.start]
            self.start = 0
        if not items or new[0] >= items[-1]:
            items.extend(new)
        elif len(new) <= 8:
            for one in new:
                bisect.insort(items, one)
        else:
            items.extend(new)
            items.sort()


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
        self._keys: dict[Tag, _Run] = {}  # (owner, group) -> its keys in order
        self._entries = 0  # keys in all runs, live or not
        self._pending: set[str] = set()  # live, but their record could not be read yet
        self._dirty = False  # keys were taken since the last sync
        self.queued_by_owner: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.running_groups: Counter[Tag] = Counter()
        # owner -> heap of (running in the group, first key, group, version)
        self._groups: dict[str, list[tuple[int, Item, str | None, int]]] = {}
        self._gver: dict[Tag, int] = {}
        self._gcount: Counter[str] = Counter()  # owner -> groups with a version
        # heap of (running / weight, first key, owner, version)
        self._owners: list[tuple[float, Item, str, int]] = []
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
        if generation == self._generation and not self._dirty:
            if self._pending:
                self._retry_pending()
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
        added: dict[Tag, list[Item]] = {}
        for key in keys:  # in scheduling order
            if live[key.job_id] is not key:
                continue  # two markers of one job (a repair raced a submission): one
            # new, changed, unreadable before, or taken by a pass but still listed (its
            # claim was lost or undone)
            if old.get(key.job_id) != key or key.job_id not in self._tags:
                tag = self._add(key)
                if tag is not None:
                    added.setdefault(tag, []).append(item(key))
        for tag, items in added.items():
            self._keys.setdefault(tag, _Run()).add(items)
            self._entries += len(items)
            touched.add(tag)
        self.owners.prune(live.keys(), len(live))
        if self._entries > 2 * len(self._tags) + self._slack:
            self._compact()
        for tag in touched:
            self._refresh_group(tag)

    def _retry_pending(self) -> None:
        """Ask again for the owners of the queued jobs whose record was not there: a
        submission under way (a marker whose folder never appears is dropped by the
        index sync after an hour)."""
        for job_id in list(self._pending):
            self._pending.discard(job_id)
            key = self._live.get(job_id)
            if key is None:
                continue
            tag = self._add(key)
            if tag is not None:
                self._keys.setdefault(tag, _Run()).add([item(key)])
                self._entries += 1
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
        return tag

    def _compact(self) -> None:
        """Rebuild the runs from the live keys (many keys left the queue unseen)."""
        runs: dict[Tag, list[Item]] = {}
        for job_id, tag in self._tags.items():
            runs.setdefault(tag, []).append(item(self._live[job_id]))
        for items in runs.values():
            items.sort()
        self._keys = {tag: _Run(items) for tag, items in runs.items()}
        self._entries = len(self._tags)

    def _head(self, tag: Tag) -> Item | None:
        """The first live key of a group (dropping those that left the queue)."""
        run = self._keys.get(tag)
        if run is None:
            return None
        while (first := run.first()) is not None:
            live = self._live.get(first[2])
            if (live is first[3] or live == first[3]) and self._tags.get(first[2]) == tag:
                return first
            run.take()
            self._entries -= 1
        del self._keys[tag]
        return None

    def queued_tags(self) -> Mapping[str, Tag]:
        """job id -> Tag of every queued job whose record was read."""
        return self._tags

    # ------------------------------------------------------------ the turns
    def _refresh_group(self, tag: Tag) -> None:
        """A group's running count or first key changed: its entry, then its owner's."""
        self._version += 1
        if tag not in self._gver:
            self._gcount[tag.owner] += 1
        ver = self._gver[tag] = self._version
        head = self._head(tag)
        groups = self._groups.setdefault(tag.owner, [])
        if head is not None:
            heapq.heappush(groups, (self.running_groups[tag], head, tag.group, ver))
        elif self.running_groups[tag] == 0:
            del self._gver[tag]  # nothing queued or running: forgotten
            self._gcount[tag.owner] -= 1
            if not self._gcount[tag.owner]:
                del self._gcount[tag.owner]
        if len(groups) > 2 * self._gcount[tag.owner] + min(self._slack, 16):
            groups[:] = [e for e in groups if self._gver.get(Tag(tag.owner, e[2])) == e[3]]
            heapq.heapify(groups)
        self._refresh_owner(tag.owner)

    def _top_group(self, owner: str) -> tuple[int, Item, str | None, int] | None:
        groups = self._groups.get(owner)
        while groups:
            entry = groups[0]
            if self._gver.get((owner, entry[2])) == entry[3]:  # type: ignore[call-overload]
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
        if len(self._owners) > 2 * len(self._over) + min(self._slack, 16):
            self._owners = [e for e in self._owners if self._over.get(e[2]) == e[3]]
            heapq.heapify(self._owners)

    def set_running(self, by_owner: Mapping[str, int], by_group: Mapping[Tag, int]) -> None:
        """The running jobs now, per owner and per (owner, group): only the owners and
        groups whose count changed since the last call are placed again (the counts of
        a pass's own launches are already in)."""
        excluded, self._excluded = self._excluded, set()
        # the (key, count) pairs in one and not the other: the keys whose count changed
        changed = {t for t, _ in by_group.items() ^ self.running_groups.items()}
        owners = {o for o, _ in by_owner.items() ^ self.running.items()} | excluded
        self.running = Counter(by_owner)
        self.running_groups = Counter(by_group)
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
            # A current group entry names its group's first live key: any change of
            # that (a sync, a take) placed the group again under a new version.
            key = self._keys[tag].take()[3]
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
