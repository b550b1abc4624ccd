"""The client-side API budget: token bucket and back-off (pure, injected clock)."""

from __future__ import annotations

import pytest

from qforge.k8s.throttle import Backoff, TokenBucket, retry_after_seconds, transient


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_bucket_lets_a_burst_through_then_holds_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(100, 10, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        assert bucket.acquire() == 0
    for _ in range(100):
        bucket.acquire()
    assert clock.now == pytest.approx(1.0)  # 100 more at 100/s
    clock.now += 5  # idle: saves up to the burst only
    waits = [bucket.acquire() for _ in range(11)]
    assert waits[:10] == [0] * 10 and waits[10] == pytest.approx(0.01)


def test_backoff_doubles_honours_retry_after_and_resets() -> None:
    clock = Clock()
    backoff = Backoff(initial=0.25, ceiling=4, clock=clock)
    assert backoff.remaining() == 0
    assert [backoff.failed() for _ in range(6)] == [0.25, 0.5, 1, 2, 4, 4]
    assert backoff.failed(retry_after=3) == 4
    backoff.succeeded()
    assert backoff.failed(retry_after=3) == 3
    assert backoff.remaining() == pytest.approx(4)  # the longest pause still in force
    clock.now += 4
    assert backoff.remaining() == 0


def test_what_is_worth_retrying() -> None:
    assert all(transient(s) for s in (None, 0, 429, 500, 503, 504))
    assert not any(transient(s) for s in (400, 403, 404, 409, 422))
    assert retry_after_seconds({"Retry-After": "2"}) == 2
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None
