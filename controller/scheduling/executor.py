"""The interface between the scheduling core and what actually runs a calculation."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from qforge.record import Placement
from qforge.store.jobstore import Claimed
from qforge_runner.result import JobError, RunReport


@dataclass(frozen=True)
class Update:
    """News about a job still running: where it landed, or why it does not start."""

    job_id: str
    placement: Placement | None = None
    waiting_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How one launched job ended, as seen by its executor.

    Exactly one of: `report` (the runner's own report, success or typed failure),
    `error` (the executor's verdict, e.g. the pod was OOMKilled), or `requeue` (the
    executor gave the job back without running it to the end, e.g. on shutdown).
    """

    job_id: str
    report: RunReport | None = None
    error: JobError | None = None
    requeue: bool = False
    placement: Placement | None = None


class Executor(Protocol):
    kind: str  # "local" | "kubernetes": goes into each record's placement
    # Whether another scheduler may take back this one's jobs when it dies: True when
    # they ran in this process (they died with it), False when they run on elsewhere
    # (a cluster's runner Jobs: only a controller adopts them).
    others_may_recover: bool

    def attach(self, wake: threading.Event) -> None:
        """Set `wake` whenever a job ends, so the scheduler refills the slot at once."""
        ...

    def free_slots(self) -> int:
        """How many more jobs may be launched right now (the concurrency cap)."""
        ...

    def launch(self, claimed: Claimed) -> None:
        """Start a claimed job. Must not block on the calculation."""
        ...

    def adopt(self, claimed: Claimed) -> bool:
        """Resume tracking a job this scheduler instance claimed before a restart.
        False when it cannot (a local process died with the old worker): the job is
        requeued."""
        ...

    def updates(self) -> list[Update]:
        """Placement and waiting-reason changes since the last call."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Stop a job launched here; True when it was ours. Its Outcome follows."""
        ...

    def collect(self) -> list[Outcome]:
        """Outcomes of jobs that ended since the last call."""
        ...

    def active(self) -> set[str]:
        """Ids of the jobs launched here and not yet collected."""
        ...

    def holding(self) -> set[str]:
        """Ids of the jobs launched here that hold a slot now (those `free_slots()`
        counts): `active()` less any whose calculation has ended but whose outcome is
        not collected yet (a local job saving its results)."""
        ...

    def shutdown(self) -> list[Outcome]:
        """Stop everything (the scheduler is exiting) and return the final outcomes."""
        ...
