"""The controller's API budget: a client-side rate limit and a back-off after 429/5xx.

Pure of I/O: the clock and the sleep are injected, so the arithmetic is unit-tested.
The Python Kubernetes client has no limiter of its own (client-go's QPS/burst); this is
that limiter, for every request the executor makes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Backoff", "TokenBucket", "retry_after_seconds", "transient"]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire()` waits for one."""

    def __init__(self, rate: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going into debt); how long to wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class Backoff:
    """After an answer that says "not now" (429, 5xx, no answer): wait, doubling from
    `initial` up to `ceiling`, or as long as the server's Retry-After asks; a success
    resets it."""

    def __init__(self, initial: float = 0.25, ceiling: float = 30.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self._clock = clock
        self._delay = 0.0
        self._until = -1e18
        self._lock = threading.Lock()

    def failed(self, retry_after: float | None = None) -> float:
        """Record a refusal; returns the delay now in force."""
        with self._lock:
            self._delay = min(self.ceiling, max(self.initial, self._delay * 2))
            delay = max(self._delay, min(self.ceiling, retry_after or 0.0))
            self._until = max(self._until, self._clock() + delay)
            return delay

    def succeeded(self) -> None:
        with self._lock:
            self._delay = 0.0

    def remaining(self) -> float:
        """Seconds until requests may be tried again (0 when they may now)."""
        with self._lock:
            return max(0.0, self._until - self._clock())


def transient(status: int | None) -> bool:
    """API answers worth trying again later: none at all, too many requests, 5xx."""
    return not status or status == 429 or status >= 500


def retry_after_seconds(headers: object) -> float | None:
    """The Retry-After header of an API answer, in seconds (None when absent or odd)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get("Retry-After") or get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
