"""A tracked runner Job's phase: an explicit state and its transitions (pure).

Each claimed job the Kubernetes executor tracks is in exactly one `Phase`. What happens
to it (its create answered, the watch showing it, result.json found, the autoscaler's
word, its deletion, a cancel, a refusal) is a `Signal`; `advance` is the one place a
phase changes, by the table `TRANSITIONS`. A signal a phase does not list leaves it
as it is (a create answered after the watch already showed the Job, a deletion after a
cancel, anything after the create was given back or refused).

    LAUNCHING --created--> CREATED --seen--> SEEN --result--> RESULT
        |  \\                 |               |  \\--unfit--> UNFIT
        |   requeue/refuse   gone/cancel     gone/cancel
        v
    REQUEUED | REFUSED        GONE --cancel--> CANCELLED
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from qforge.store.jobstore import Claimed
from qforge_runner.result import JobError

__all__ = ["ANNOUNCED", "TRANSITIONS", "Phase", "Signal", "Tracked", "advance"]


class Phase(Enum):
    LAUNCHING = "launching"  # its create is sent (or queued), not answered yet
    CREATED = "created"  # the API server took the create (or said it exists)
    SEEN = "seen"  # a listing or a watch event has shown the Job
    RESULT = "result"  # its pod is on a node and result.json is in its folder
    UNFIT = "unfit"  # the autoscaler's word: no node it can make fits its pod
    GONE = "gone"  # the Job was deleted (or is missing) before its verdict
    CANCELLED = "cancelled"  # a user cancelled it: its Job is being deleted
    REQUEUED = "requeued"  # the API server did not take the create: back to the queue
    REFUSED = "refused"  # the API server refused the create: the job fails


class Signal(Enum):
    CREATED = "created"
    SEEN = "seen"
    RESULT = "result"
    UNFIT = "unfit"
    GONE = "gone"
    CANCEL = "cancel"
    REQUEUE = "requeue"
    REFUSE = "refuse"


_RUNNING: Final[Mapping[Signal, Phase]] = {
    Signal.RESULT: Phase.RESULT,
    Signal.UNFIT: Phase.UNFIT,
    Signal.GONE: Phase.GONE,
    Signal.CANCEL: Phase.CANCELLED,
}

TRANSITIONS: Final[Mapping[Phase, Mapping[Signal, Phase]]] = {
    Phase.LAUNCHING: {Signal.CREATED: Phase.CREATED, Signal.SEEN: Phase.SEEN,
                      Signal.REQUEUE: Phase.REQUEUED, Signal.REFUSE: Phase.REFUSED,
                      **_RUNNING},
    Phase.CREATED: {Signal.SEEN: Phase.SEEN, **_RUNNING},
    Phase.SEEN: dict(_RUNNING),
    Phase.RESULT: {Signal.GONE: Phase.GONE, Signal.CANCEL: Phase.CANCELLED},
    Phase.UNFIT: {Signal.RESULT: Phase.RESULT, Signal.GONE: Phase.GONE,
                  Signal.CANCEL: Phase.CANCELLED},
    Phase.GONE: {Signal.CANCEL: Phase.CANCELLED},
    Phase.CANCELLED: {},
    Phase.REQUEUED: {},
    Phase.REFUSED: {},
}

# Phases in which the API server has the Job: a record may name it (a record naming its
# Job means "launched" to the next leader's adoption).
ANNOUNCED: Final = frozenset({Phase.CREATED, Phase.SEEN, Phase.RESULT, Phase.UNFIT})
# Phases in which the watch has shown the Job at least once.
SHOWN: Final = frozenset({Phase.SEEN, Phase.RESULT, Phase.UNFIT})


def advance(phase: Phase, signal: Signal) -> Phase:
    """The phase after `signal` (the same phase when the table has no such move)."""
    return TRANSITIONS[phase].get(signal, phase)


@dataclass
class Tracked:
    """One claimed job and its runner Job, as the executor tracks it."""

    claimed: Claimed
    name: str
    phase: Phase = Phase.LAUNCHING
    refusal: JobError | None = None  # the API server's reason (phase REFUSED)
    unfit: str | None = None  # the autoscaler's reason (phase UNFIT)
    pending_since: float | None = None  # its pod unschedulable since (clock)
    shown_at: float | None = None  # when a listing or the watch first showed its Job
    last_update: tuple[Any, ...] = field(default_factory=tuple)

    def signal(self, signal: Signal) -> bool:
        """Apply `signal`; whether the phase changed."""
        before = self.phase
        self.phase = advance(before, signal)
        return self.phase is not before

    @property
    def job_id(self) -> str:
        return self.claimed.record.job_id
