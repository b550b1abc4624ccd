"""Keeping the queue index consistent with the metadata files.

The markers under `.qforge/` are derived data. They are rebuilt from the records:
- in full when a scheduler starts (a crash or a hand copy may have left them stale) or
  when the index folder is missing;
- incrementally while it runs: when the store folder's mtime changes (a job folder was
  added or removed), the new folder names are read, and only those.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

from controller.record import Status
from controller.store.jobstore import ORPHAN_MARKER_SECONDS, CorruptRecord, JobNotFound, JobStore
from controller.store.layout import QueueKey

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    jobs: int = 0
    queued: int = 0
    markers_created: int = 0
    markers_removed: int = 0
    corrupt: list[str] = field(default_factory=list)


class IndexKeeper:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._known: set[str] = set()
        self._root_mtime: int | None = None

    def rebuild(self) -> RebuildReport:
        """Full pass: one read of every record. O(all jobs); run at start-up."""
        store = self.store
        store.ensure()
        report = RebuildReport()
        self._root_mtime = _mtime(store)
        names = store.job_ids()
        queued_ids: set[str] = set()
        for job_id in names:
            if not store.layout.metadata(job_id).exists():
                continue
            report.jobs += 1
            status = _quick_status(store, job_id)
            if status is None:
                report.corrupt.append(job_id)
                continue
            if status == Status.QUEUED:
                queued_ids.add(job_id)
                report.queued += 1
                if self._ensure_marker(job_id):
                    report.markers_created += 1
        # Drop markers whose job is no longer QUEUED (a crash between the record write
        # and the marker removal) and orphans of submissions that died half-way.
        now = time.time()
        for key in store.queued():
            if key.job_id in queued_ids:
                continue
            path = store.layout.queue / key.name
            if not store.layout.job_dir(key.job_id).exists():
                try:
                    if now - path.stat().st_mtime < ORPHAN_MARKER_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
            path.unlink(missing_ok=True)
            report.markers_removed += 1
        self._known = set(names)
        for job_id in report.corrupt:
            log.error("Skipping job %s: metadata.json is unreadable or invalid", job_id)
        return report

    def refresh(self) -> int:
        """Cheap check each poll: one stat; on a change, read only the new folders.
        Returns the number of markers created."""
        store = self.store
        if not store.layout.queue.is_dir():
            return self.rebuild().markers_created
        mtime = _mtime(store)
        if mtime == self._root_mtime:
            return 0
        self._root_mtime = mtime
        names = store.job_ids()
        new = [n for n in names if n not in self._known]
        self._known = set(names)
        created = 0
        for job_id in new:
            if not store.layout.metadata(job_id).exists():
                continue
            status = _quick_status(store, job_id)
            if status is None:
                log.error("Skipping job %s: metadata.json is unreadable or invalid", job_id)
            elif status == Status.QUEUED and self._ensure_marker(job_id):
                log.info("Indexed job %s found in the store", job_id)
                created += 1
        return created

    def _ensure_marker(self, job_id: str) -> bool:
        try:
            record = self.store.read(job_id)
        except (CorruptRecord, JobNotFound):
            return False
        if record.status is not Status.QUEUED:
            return False
        return self.store.ensure_queue_marker(record)


def _mtime(store: JobStore) -> int | None:
    try:
        return os.stat(store.root).st_mtime_ns
    except FileNotFoundError:
        return None


def _quick_status(store: JobStore, job_id: str) -> Status | None:
    """The status without validating the whole record (fast path for big stores)."""
    try:
        data = json.loads(store.layout.metadata(job_id).read_bytes())
        return Status(data["status"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = ["IndexKeeper", "QueueKey", "RebuildReport"]
