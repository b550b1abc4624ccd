"""Overviews shared by the readers of one server: a group's status costs one read of each
member's record (O(group)), and 200 clients polling a group of 100,000 jobs must not
cost 200 such reads a second.

An overview is reused for `ttl` seconds after it was computed; at most one request per
key computes it at a time (the others wait for that one, and use its answer). Once it is
older than `ttl`, the first request computes it again while the others are answered the
previous one, as long as that is younger than `stale`: at most one request in a group's
TTL waits for the store. A write through the same server (submit, cancel, delete) drops
every overview, so its author reads its own change. The worker's changes are seen within
`ttl` plus one computation.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from qforge.service.models import Overview

STATUS_TTL = 2.0  # seconds an overview is reused
STATUS_STALE = 30.0  # seconds an older one may answer while it is being computed again
MAX_ENTRIES = 1024  # groups remembered (the least recently computed go first)


@dataclass(frozen=True, slots=True)
class _Entry:
    at: float  # when its computation ended (the clock's seconds)
    value: Overview


class OverviewCache:
    """Thread-safe: a server's request threads share one."""

    def __init__(self, ttl: float = STATUS_TTL, stale: float = STATUS_STALE, *,
                 max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.stale, self.max_entries, self.clock = ttl, stale, max_entries, clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self._generation = 0  # bumped by clear(): an older computation is not kept

    def get(self, key: Hashable, compute: Callable[[], Overview]) -> Overview:
        with self._lock:
            entry = self._entries.get(key)
            age = self.clock() - entry.at if entry is not None else None
            if entry is not None and age is not None and age < self.ttl:
                return entry.value
            flight = self._flights.setdefault(key, threading.Lock())
        if entry is not None and age is not None and age < self.stale:
            if not flight.acquire(blocking=False):
                return entry.value  # being computed again: the previous one answers
        else:
            flight.acquire()  # nothing recent to answer with: wait for the computation
        try:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and self.clock() - entry.at < self.ttl:
                    return entry.value  # computed while this request waited
                generation = self._generation
            value = compute()
            with self._lock:
                if generation != self._generation:
                    return value  # a write came during the computation: not kept
                self._entries[key] = _Entry(self.clock(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    old, _ = self._entries.popitem(last=False)
                    self._flights.pop(old, None)
            return value
        finally:
            flight.release()

    def clear(self) -> None:
        """Forget every overview (after a write: the next read computes it afresh)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
