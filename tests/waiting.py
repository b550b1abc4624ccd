"""The bounded wait of the tests: poll until something holds, fail after a timeout.

No test sleeps for a fixed time or waits without a bound; this is the one way a test of
the unit and integration tiers waits (the cluster, autoscale, infra and e2e tiers keep
their own, which also watch the daemons of their clusters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *,
               interval: float = 0.2) -> T:
    """Poll `predicate` every `interval` s until it returns something truthy, and return
    that; raise AssertionError naming `what` after `timeout` s (a bound, not a timing
    check: it is checked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
