"""Cancel requests: `.qforge/cancel/<job_id>`, left by `qforge cancel`; the scheduler
that runs (or would run) the job acts on it and clears it."""

from __future__ import annotations

import os

from qforge.record import JobRecord
from qforge.store.files import touch
from qforge.store.layout import Layout
from qforge.store.records import Records


class CancelRequests:
    def __init__(self, layout: Layout, records: Records) -> None:
        self.layout = layout
        self._records = records

    def request(self, job_id: str) -> JobRecord:
        """Ask for a job to be cancelled (nothing to do for a finished one). Returns
        its record as read before the request."""
        record = self._records.read(job_id)
        if not record.status.terminal:
            self._records.ensure()
            touch(self.layout.cancel / job_id)
        return record

    def pending(self) -> list[str]:
        """The ids of every request, sorted."""
        try:
            return sorted(os.listdir(self.layout.cancel))
        except FileNotFoundError:
            return []

    def requested(self, job_id: str) -> bool:
        return (self.layout.cancel / job_id).exists()

    def clear(self, job_id: str) -> None:
        (self.layout.cancel / job_id).unlink(missing_ok=True)
