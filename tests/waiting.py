"""The bounded wait of the tests: poll until something holds, fail after a timeout.

No test sleeps for a fixed time or waits without a bound; this is the one way every tier
waits (unit, integration, cluster, autoscale, infra, e2e and the clusters of tests/kube).
A tier that also watches daemons passes `check` (it raises as soon as one died); one that
probes a service that may not be up yet passes `tolerate`; one with its own error type
passes `error`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *,
               interval: float = 0.2,
               check: Callable[[], None] | None = None,
               tolerate: tuple[type[Exception], ...] = (),
               error: type[Exception] = AssertionError) -> T:
    """Poll `predicate` every `interval` s until it returns something truthy, and return
    that; raise `error` naming `what` after `timeout` s (a bound, not a timing check: it
    is checked once more at the deadline).

    `check` runs before every poll and may raise to end the wait early (a daemon died).
    An exception of a `tolerate` type from `predicate` counts as "not yet"; the last one
    is named in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if check is not None:
            check()
        try:
            value = predicate()
        except tolerate as exc:
            last_error = f" (last error: {exc})"
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:g}s waiting for {what}{last_error}")
        time.sleep(interval)
