"""What the scheduling core tells an observer (the metrics): jobs started and finished,
and each pass. The core calls these and nothing else; the default observer does nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from qforge.record import JobRecord

if TYPE_CHECKING:
    from qforge.scheduling.core import PassReport


class SchedulerObserver(Protocol):
    def job_started(self, record: JobRecord) -> None:
        """A claimed job was handed to the executor (`record` is RUNNING)."""
        ...

    def job_finished(self, record: JobRecord) -> None:
        """A job reached a terminal state; `record` is the terminal record."""
        ...

    def pass_done(self, report: PassReport, seconds: float) -> None:
        """A scheduling pass ended after `seconds`."""
        ...


class NullObserver:
    def job_started(self, record: JobRecord) -> None:
        pass

    def job_finished(self, record: JobRecord) -> None:
        pass

    def pass_done(self, report: PassReport, seconds: float) -> None:
        pass
