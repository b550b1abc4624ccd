"""Queries over the indexes: counts per status, and the records of a status or group,
reading only the candidates an index names (docs/store.md, "question / reads")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from qforge.record import UNKNOWN_OWNER, JobRecord, Status
from qforge.store.errors import CorruptRecord, JobNotFound, one_line
from qforge.store.groups import Groups
from qforge.store.layout import DONE_ID_AT, Layout
from qforge.store.listings import Listings
from qforge.store.queue import Queue
from qforge.store.records import Records
from qforge.store.waiting import WaitingIndex


class Queries:
    def __init__(self, layout: Layout, records: Records, listings: Listings, queue: Queue,
                 groups: Groups, waiting: WaitingIndex) -> None:
        self._waiting = waiting
        self.layout = layout
        self._records = records
        self._listings = listings
        self._queue = queue
        self._groups = groups

    def done_names(self, status: Status) -> list[str]:
        """Done markers of one terminal status (names: DoneKey); do not modify."""
        return self._listings.names(self.layout.done(status.value))

    def finished_ids(self, status: Status) -> list[str]:
        return [n[DONE_ID_AT:] for n in self.done_names(status) if len(n) > DONE_ID_AT]

    def ids_with_status(self, status: Status) -> list[str]:
        """The job ids the index holds for a status: O(jobs with that status)."""
        if status is Status.QUEUED:  # in the queue, and waiting for other jobs
            return [k.job_id for k in self._queue.queued()] + list(self._waiting.ids())
        if status is Status.RUNNING:
            return [m.job_id for m in self._queue.running_markers()]
        return self.finished_ids(status)

    def counts(self, group: str | None = None) -> dict[Status, int]:
        """Jobs per status. The whole store: from the index alone (one listing per
        status, each reused while unchanged; no record is read). A group: the statuses
        of its members (O(group))."""
        if group is not None:
            out = dict.fromkeys(Status, 0)
            for status in self._groups.statuses(group).values():
                out[status] += 1
            return out
        out = {s: len(self.done_names(s)) for s in Status if s.terminal}
        out[Status.RUNNING] = len(self._queue.running_markers())
        out[Status.QUEUED] = len(self._queue.queued()) + self._waiting.count()
        return {s: out[s] for s in Status}

    def waiting(self, group: str | None = None) -> int:
        """How many QUEUED jobs wait for others (of a group: its members among them)."""
        ids = self._waiting.ids()
        if group is None or not ids:
            return len(ids)
        members = set(self._groups.ids(group))
        return sum(1 for job_id in ids if job_id in members)

    def _selected_ids(self, status: Status | None, group: str | None) -> list[str]:
        """The candidates of a selection, from the indexes: a group's members, a
        status's index entries, or every job folder."""
        if group is not None:
            return list(self._groups.ids(group))
        if status is not None:
            return sorted(set(self.ids_with_status(status)))
        return sorted(self._records.job_id_set())

    def select(self, *, status: Status | None = None,
               group: str | None = None) -> Iterator[JobRecord | CorruptRecord]:
        """The records of one status and/or group, reading only those (and, for a
        status, only the index's candidates; a record's own status decides)."""
        for job_id in self._selected_ids(status, group):
            try:
                record = self._records.read(job_id)
            except JobNotFound:
                continue
            except CorruptRecord as exc:
                yield exc
                continue
            if status is not None and record.status is not status:
                continue
            if group is not None and not self._groups.contains(record, group):
                continue
            yield record

    def select_data(self, *, status: Status | None = None, group: str | None = None,
                    ) -> Iterator[dict[str, Any] | CorruptRecord]:
        """As select(), but each record as the JSON object metadata.json holds, parsed
        and checked for its id and status only: for reading thousands of records
        fast (export), where validating every molecule again would dominate."""
        for job_id in self._selected_ids(status, group):
            try:
                raw = self.layout.metadata(job_id).read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                yield CorruptRecord(job_id, exc.strerror or str(exc))
                continue
            try:
                data = json.loads(raw)
                current = Status(data["status"])
                if data["job_id"] != job_id or not isinstance(data["spec"], dict):
                    raise ValueError("job_id or spec")
            except (ValueError, KeyError, TypeError) as exc:
                yield CorruptRecord(job_id, one_line(exc))
                continue
            if status is not None and current is not status:
                continue
            if group is not None and data.get("group") != group and not (
                    self.layout.memberships(job_id) / group).exists():
                continue
            data.setdefault("owner", UNKNOWN_OWNER)  # written before owners existed
            yield data
