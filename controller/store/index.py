"""Keeping the store's indexes consistent with the metadata files.

Every marker under `.qforge/` is derived data (docs/store.md): the queue and running
markers, the done markers (one per finished job, by status), the group markers and the
dedup claims. A job folder is *indexed* when its id has a queue, running or done marker.
They are brought in line with the records:
- at start-up, `sync()`: one listing of the store and of the status indexes; only the
  folders not indexed yet (submitted by a crashed submitter, copied in by hand, an older
  store, a deleted index) are read, and running markers whose record has finished get
  their done marker (a crash inside `JobStore.queue.finish`). A restart therefore reads what
  changed since the last run, not every record;
- while running, `refresh()`: when the store folder's mtime changes (a job folder was
  added or removed), the new folder names are read, and only those;
- on request, `rebuild()`: every record read, every index made again and stale markers
  removed (after a hand edit of metadata.json, say).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from qforge.record import JobRecord, Status
from qforge.store.errors import CorruptRecord, JobNotFound
from qforge.store.jobstore import JobStore
from qforge.store.layout import DONE_ID_AT, DONE_STATUSES, QueueKey
from qforge.store.queue import ORPHAN_MARKER_SECONDS
from qforge.store.records import done_name
from qforge.store.waiting import is_waiting

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    jobs: int = 0
    queued: int = 0
    read: int = 0  # records read (sync: only the folders not indexed yet)
    markers_created: int = 0  # queue markers
    markers_removed: int = 0  # stale queue markers
    indexed: int = 0  # done, group and dedup markers created
    stale_removed: int = 0  # stale done and group markers removed
    corrupt: list[str] = field(default_factory=list)


class IndexKeeper:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._known: set[str] = set()
        self._root_mtime: int | None = None

    # ------------------------------------------------------------------ sync
    def sync(self) -> RebuildReport:
        """Start-up pass: listings of the store and the status indexes; reads only the
        job folders that no status index holds, and the records behind running
        markers. O(changed) reads; O(all) names listed, no record parsed for them."""
        store = self.store
        store.ensure()
        report = RebuildReport()
        self._root_mtime = _mtime(store)
        present = store.job_id_set()
        report.jobs = len(present)
        queue_keys = store.queue.queued()
        indexed: set[str] = {k.job_id for k in queue_keys}
        running = store.queue.running_markers()
        indexed.update(m.job_id for m in running)
        indexed.update(store.waiting.ids())  # jobs waiting for others (store/waiting.py)
        indexed.update(m.job_id for m in store.waiting.releasing_markers())
        done_dirs: dict[str, list[str]] = {}
        for status in DONE_STATUSES:
            listing = os.listdir(store.layout.done(status))
            done_dirs[status] = listing
            indexed.update(n[DONE_ID_AT:] for n in listing)
        for job_id in sorted(present - indexed):
            self._index_new(job_id, report)
        for marker in running:  # finished, but the crash came before its done marker
            record = self._read(marker.job_id)
            if record is not None and store.repair.ensure_done(record):
                report.indexed += 1
        for status, listing in done_dirs.items():  # jobs removed by hand
            for name in listing:
                if name[DONE_ID_AT:] not in present:
                    (store.layout.done(status) / name).unlink(missing_ok=True)
                    report.stale_removed += 1
        report.markers_removed += self._drop_orphan_queue_markers(queue_keys, present, None)
        ended = {n[DONE_ID_AT:] for listing in done_dirs.values() for n in listing}
        for parent in store.waiting.parents_with_dependents():  # a signal lost in a crash
            if parent in ended or parent not in present:
                store.waiting.signal(parent)
        report.queued = len(store.queue.queued())
        self._known = present
        self._log(report)
        return report

    def refresh(self) -> int:
        """Cheap check each poll: one stat; on a change, read only the new folders.
        Returns the number of queue markers created."""
        store = self.store
        if not store.layout.queue.is_dir():
            return self.rebuild().markers_created
        mtime = _mtime(store)
        if mtime == self._root_mtime:
            return 0
        self._root_mtime = mtime
        names = store.job_id_set()
        new = sorted(names - self._known)
        self._known = names
        report = RebuildReport()
        for job_id in new:
            self._index_new(job_id, report)
        self._log(report)
        return report.markers_created

    # --------------------------------------------------------------- rebuild
    def rebuild(self) -> RebuildReport:
        """Full pass: one read of every record, every index made again, stale markers
        removed. O(all jobs)."""
        store = self.store
        store.ensure()
        report = RebuildReport()
        self._root_mtime = _mtime(store)
        names = store.job_ids()
        queued_ids: set[str] = set()
        waiting_ids: set[str] = set()
        members: dict[str, set[str]] = {}
        done_names: dict[str, set[str]] = {s: set() for s in DONE_STATUSES}
        for job_id in names:
            if not store.layout.metadata(job_id).exists():
                continue
            report.jobs += 1
            record = self._read(job_id, report)
            if record is None:
                continue
            self._index_record(record, report)
            if is_waiting(record):
                waiting_ids.add(job_id)
            elif record.status is Status.QUEUED:
                queued_ids.add(job_id)
                report.queued += 1
            for group in store.groups.of(record):
                members.setdefault(group, set()).add(job_id)
        for status in DONE_STATUSES:
            done_names[status] = {n[DONE_ID_AT:] for n in os.listdir(store.layout.done(status))}
        present = set(names)
        report.markers_removed += self._drop_orphan_queue_markers(
            store.queue.queued(), present, queued_ids)
        # Done markers of jobs gone or no longer of that status (a hand edit).
        for status in DONE_STATUSES:
            folder = store.layout.done(status)
            for name in os.listdir(folder):
                record = None if name[DONE_ID_AT:] not in present else self._read(
                    name[DONE_ID_AT:])
                if record is None or record.status.value != status or \
                        name != done_name(record):
                    (folder / name).unlink(missing_ok=True)
                    report.stale_removed += 1
        report.stale_removed += self._drop_stale_waiting(waiting_ids)
        # Group markers of jobs that are not members (older than a submission takes).
        now = time.time()
        for group in os.listdir(store.layout.groups):
            folder = store.layout.group(group)
            for job_id in os.listdir(folder):
                if job_id in members.get(group, ()):
                    continue
                try:
                    if now - (folder / job_id).stat().st_mtime < ORPHAN_MARKER_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
                (folder / job_id).unlink(missing_ok=True)
                report.stale_removed += 1
        self._known = present
        for job_id in report.corrupt:
            log.error("Skipping job %s: metadata.json is unreadable or invalid", job_id)
        return report

    # ------------------------------------------------------------- one job
    def _index_new(self, job_id: str, report: RebuildReport) -> None:
        if not self.store.layout.metadata(job_id).exists():
            # submissions rename a complete folder into place: this one lost its record
            # (deleted by hand, a damaged disk); reported at each sync, never indexed
            log.error("Skipping job %s: its folder has no metadata.json", job_id)
            return
        record = self._read(job_id, report)
        if record is None:
            log.error("Skipping job %s: metadata.json is unreadable or invalid", job_id)
            return
        if self._index_record(record, report):
            log.info("Indexed job %s found in the store", job_id)

    def _index_record(self, record: JobRecord, report: RebuildReport) -> bool:
        """Every index entry a record implies. True if its status marker was made."""
        store = self.store
        made = False
        if record.status is Status.QUEUED:
            if store.repair.ensure_queued(record):
                report.markers_created += 1
                made = True
        elif record.status is Status.RUNNING:
            if store.repair.ensure_running(record):
                report.indexed += 1
                made = True
        elif store.repair.ensure_done(record):
            report.indexed += 1
            made = True
        for group in store.groups.of(record):
            path = store.layout.group(group) / record.job_id
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                report.indexed += 1
        if store.dedup.ensure_claim(record):
            report.indexed += 1
        return made

    def _read(self, job_id: str, report: RebuildReport | None = None) -> JobRecord | None:
        try:
            record = self.store.read(job_id)
        except JobNotFound:
            return None
        except CorruptRecord:
            if report is not None:
                report.corrupt.append(job_id)
            return None
        if report is not None:
            report.read += 1
        return record

    def _drop_orphan_queue_markers(self, keys: list[QueueKey], present: set[str],
                                   queued_ids: set[str] | None) -> int:
        """Queue markers of jobs whose folder never appeared (a submission that died
        half-way, after ORPHAN_MARKER_SECONDS) and, given `queued_ids` (a full
        rebuild), those whose job is no longer QUEUED."""
        store = self.store
        now = time.time()
        removed = 0
        for key in keys:
            path = store.layout.queue / key.name
            if key.job_id in present:
                if queued_ids is None or key.job_id in queued_ids:
                    continue
                data = store.peek(key.job_id)  # read as not QUEUED: requeued since?
                if data is not None and data.get("status") == Status.QUEUED.value:
                    continue
            else:
                try:
                    if now - path.stat().st_mtime < ORPHAN_MARKER_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def _drop_stale_waiting(self, waiting_ids: set[str]) -> int:
        """Waiting markers and edges of jobs that are not waiting (a full rebuild); a
        parent with waiting dependents that has ended is signalled."""
        waiting = self.store.waiting
        removed = 0
        for job_id in os.listdir(waiting.waiting) if waiting.waiting.is_dir() else []:
            if job_id not in waiting_ids:
                (waiting.waiting / job_id).unlink(missing_ok=True)
                removed += 1
        for parent in waiting.parents_with_dependents():
            children = waiting.dependents(parent)
            for child in children:
                if child not in waiting_ids:
                    (waiting.after / parent / child).unlink(missing_ok=True)
                    removed += 1
            data = self.store.peek(parent)
            if data is None or data.get("status") in DONE_STATUSES:
                waiting.signal(parent)
        return removed

    def _log(self, report: RebuildReport) -> None:
        for job_id in report.corrupt:
            log.error("Skipping job %s: metadata.json is unreadable or invalid", job_id)


def _mtime(store: JobStore) -> int | None:
    try:
        return os.stat(store.root).st_mtime_ns
    except FileNotFoundError:
        return None


__all__ = ["IndexKeeper", "QueueKey", "RebuildReport"]
