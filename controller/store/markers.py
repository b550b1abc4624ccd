"""Index repair: the marker a record implies, made when it is missing (a deleted
index, a folder copied in, an older store). IndexKeeper (index.py) decides which
records to look at; this module makes their queue, running and done markers (the dedup
claim: DedupIndex.ensure_claim, the group markers: IndexKeeper)."""

from __future__ import annotations

from qforge.record import JobRecord, Status
from qforge.store.errors import StoreError
from qforge.store.files import touch
from qforge.store.layout import Layout, QueueKey, RunningMarker
from qforge.store.queue import Queue, make_done_marker
from qforge.store.records import Records
from qforge.store.waiting import WaitingIndex, is_waiting


class IndexRepair:
    def __init__(self, layout: Layout, records: Records, queue: Queue,
                 waiting: WaitingIndex) -> None:
        self.layout = layout
        self._records = records
        self._queue = queue
        self._waiting = waiting

    def ensure_done(self, record: JobRecord) -> bool:
        """Give a finished record its done marker. Returns True if one was created."""
        return make_done_marker(self.layout, record)

    def ensure_queued(self, record: JobRecord) -> bool:
        """Make sure a QUEUED record has its marker (a waiting one: its waiting markers,
        and a signal for each parent that has ended). Returns True if one was created."""
        if is_waiting(record):
            made = self._waiting.ensure(record)
            for parent in record.depends_on:
                if self._done(parent):
                    self._waiting.signal(parent)
            return made
        key = QueueKey.make(record.spec.priority, record.created_ns, record.job_id)
        path = self.layout.queue / key.name
        if path.exists():
            return False
        for marker in self._queue.running_markers():
            if marker.job_id == record.job_id:
                return False
        touch(path)
        return True

    def _done(self, job_id: str) -> bool:
        data = self._records.peek(job_id)
        status = data.get("status") if data is not None else None
        return status is None or status in ("COMPLETED", "FAILED", "CANCELLED")

    def ensure_running(self, record: JobRecord) -> bool:
        """Give a RUNNING record whose marker was lost (a deleted index) the marker of
        the instance its placement names, so that the owner's death is noticed. Checked
        again afterwards: a job that finished meanwhile loses the marker again."""
        instance = record.placement.instance if record.placement else None
        if record.status is not Status.RUNNING or not instance:
            return False
        if any(m.job_id == record.job_id for m in self._queue.running_markers()):
            return False
        path = self.layout.running / RunningMarker(record.job_id, instance).name
        touch(path)
        try:
            now = self._records.read(record.job_id)
        except StoreError:
            path.unlink(missing_ok=True)
            return False
        if now.status is not Status.RUNNING:
            path.unlink(missing_ok=True)
            make_done_marker(self.layout, now)
            return False
        return True
