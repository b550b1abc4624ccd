"""tests/waiting.py: the one bounded wait of the unit and integration tiers."""

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
