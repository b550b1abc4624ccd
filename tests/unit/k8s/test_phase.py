"""A tracked Job's phase: the transition table, move by move."""

from __future__ import annotations

import pytest

from qforge.k8s.phase import ANNOUNCED, TRANSITIONS, Phase, Signal, advance

P, S = Phase, Signal

MOVES = [
    # (from, signal, to)
    (P.LAUNCHING, S.CREATED, P.CREATED),
    (P.LAUNCHING, S.SEEN, P.SEEN),  # the watch shows it before the create's answer
    (P.LAUNCHING, S.REQUEUE, P.REQUEUED),
    (P.LAUNCHING, S.REFUSE, P.REFUSED),
    (P.LAUNCHING, S.RESULT, P.RESULT),
    (P.LAUNCHING, S.GONE, P.GONE),
    (P.LAUNCHING, S.CANCEL, P.CANCELLED),
    (P.CREATED, S.SEEN, P.SEEN),
    (P.CREATED, S.CREATED, P.CREATED),
    (P.CREATED, S.UNFIT, P.UNFIT),
    (P.SEEN, S.CREATED, P.SEEN),  # the create's answer after the watch: still seen
    (P.SEEN, S.SEEN, P.SEEN),
    (P.SEEN, S.RESULT, P.RESULT),
    (P.SEEN, S.UNFIT, P.UNFIT),
    (P.SEEN, S.GONE, P.GONE),
    (P.SEEN, S.CANCEL, P.CANCELLED),
    (P.SEEN, S.REQUEUE, P.SEEN),  # only a create's answer gives a job back
    (P.UNFIT, S.RESULT, P.RESULT),  # placed after all, and its result is in
    (P.UNFIT, S.SEEN, P.UNFIT),
    (P.RESULT, S.SEEN, P.RESULT),
    (P.RESULT, S.UNFIT, P.RESULT),
    (P.RESULT, S.GONE, P.GONE),
    (P.GONE, S.SEEN, P.GONE),  # a deletion sticks
    (P.GONE, S.CANCEL, P.CANCELLED),  # a cancel says why
    (P.CANCELLED, S.GONE, P.CANCELLED),  # its own deletion
    (P.REQUEUED, S.SEEN, P.REQUEUED),
    (P.REFUSED, S.CREATED, P.REFUSED),
]


@pytest.mark.parametrize(("before", "signal", "after"), MOVES)
def test_transition(before: Phase, signal: Signal, after: Phase) -> None:
    assert advance(before, signal) is after


def test_every_phase_has_its_row_and_the_ends_absorb() -> None:
    assert set(TRANSITIONS) == set(Phase)
    for end in (P.CANCELLED, P.REQUEUED, P.REFUSED):
        assert all(advance(end, s) is end for s in Signal)


def test_a_record_names_its_job_only_once_the_api_server_has_it() -> None:
    assert P.LAUNCHING not in ANNOUNCED and P.GONE not in ANNOUNCED
    assert {P.CREATED, P.SEEN, P.RESULT, P.UNFIT} <= ANNOUNCED
