"""The store's errors: what a user can act on, and a record that cannot be read."""

from __future__ import annotations

from pydantic import ValidationError

from qforge_runner.errors import validation_line


class StoreError(Exception):
    """A problem with the store a user can act on."""


class JobNotFound(StoreError):
    pass


class NotFinished(StoreError):
    """Only a finished job (COMPLETED, FAILED, CANCELLED) may be deleted."""


class CorruptRecord(StoreError):
    """metadata.json exists but cannot be read or validated."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id}: unreadable metadata.json ({reason})")
        self.job_id = job_id
        self.reason = reason


def one_line(exc: Exception) -> str:
    """An exception as the one line a report shows."""
    if isinstance(exc, ValidationError):
        return validation_line(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
