"""tests/waiting.py: the one bounded wait of every test tier."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until


def test_it_returns_what_the_predicate_returned_once_truthy() -> None:
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "ready", 30, "three calls",
                      interval=0) == "ready"
    assert next(calls) == 4  # polled exactly until it held


def test_it_gives_up_at_the_bound_naming_what_it_waited_for() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for the moon"):
        wait_until(lambda: next(calls) < 0, 0.05, "the moon", interval=0.01)
    assert next(calls) >= 3  # it polled until the deadline, then once more at it


def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    class Died(RuntimeError):
        pass

    def dead() -> None:
        raise Died("etcd exited 1")

    with pytest.raises(Died, match="etcd exited 1"):
        wait_until(lambda: False, 30, "never", check=dead)


def test_tolerated_errors_count_as_not_yet_and_the_last_is_named() -> None:
    calls = itertools.count(1)

    def probe() -> str:
        if next(calls) < 3:
            raise ConnectionRefusedError("not up yet")
        return "up"

    assert wait_until(probe, 30, "the server", interval=0,
                      tolerate=(ConnectionRefusedError,)) == "up"
    with pytest.raises(LookupError, match=r"waiting for the server \(last error: nope\)"):
        wait_until(lambda: (_ for _ in ()).throw(OSError("nope")), 0.02, "the server",
                   interval=0.01, tolerate=(OSError,), error=LookupError)


def test_an_error_not_tolerated_propagates() -> None:
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 // 0, 30, "arithmetic", tolerate=(OSError,))
