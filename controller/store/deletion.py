"""Deletion of finished jobs (`qforge delete`): the folder leaves the store in one
rename, then every index entry naming it goes (docs/store.md, "Who writes what")."""

from __future__ import annotations

import os
import shutil
import time

from qforge.record import JobRecord
from qforge.store.dedup import DedupIndex
from qforge.store.errors import NotFinished
from qforge.store.groups import Groups
from qforge.store.layout import Layout
from qforge.store.records import Records, done_name


class Deletion:
    def __init__(self, layout: Layout, records: Records, dedup: DedupIndex,
                 groups: Groups) -> None:
        self.layout = layout
        self._records = records
        self._dedup = dedup
        self._groups = groups

    def deletable(self, job_id: str) -> JobRecord:
        """The record of a job `delete` may remove; JobNotFound, CorruptRecord, or
        NotFinished (a queued or running job: cancel it first) otherwise."""
        record = self._records.read(job_id)
        if not record.status.terminal:
            raise NotFinished(f"job {job_id} is {record.status.value}: only a finished job "
                              "can be deleted (cancel it first)")
        return record

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job: its folder and every index entry naming it (done
        marker, group markers, a leftover cancel request). A submission of the same input
        afterwards runs it again: the dedup claim naming it is aged so that the next
        submitter judges it dead at once (`DedupIndex.holder_state`) rather than waiting
        for a folder that will not come. Returns the deleted record."""
        record = self.deletable(job_id)
        if record.input_hash is not None:
            self._dedup.age(job_id, record.input_hash)
        # Out of every listing in one rename, then removed at leisure.
        gone = self.layout.incoming / f"{job_id}.deleted.{os.getpid()}.{time.monotonic_ns()}"
        self.layout.incoming.mkdir(parents=True, exist_ok=True)
        groups = self._groups.of(record)
        os.rename(self.layout.job_dir(job_id), gone)
        self._records.forget(job_id)
        done = self.layout.done(record.status.value) / done_name(record)
        for marker in (done, self.layout.cancel / job_id,
                       *(self.layout.group(g) / job_id for g in groups)):
            marker.unlink(missing_ok=True)
        shutil.rmtree(gone, ignore_errors=True)
        return record
