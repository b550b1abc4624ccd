"""The queue and its claims: queue markers, running markers and done markers.

A QUEUED job has `.qforge/queue/<QueueKey>`; claiming it is one rename of that marker to
`.qforge/running/<job_id>+<instance>` (one winner, on NFS too); finishing writes the
terminal record, then its done marker, then drops the running marker (docs/store.md,
"Crash consistency").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from qforge.record import JobRecord, Placement, Status
from qforge.store.errors import CorruptRecord, JobNotFound
from qforge.store.files import touch
from qforge.store.layout import Layout, QueueKey, RunningMarker
from qforge.store.listings import Listings
from qforge.store.records import Records, done_name
from qforge.store.waiting import is_waiting, signal_dependents
from qforge_runner.timestamps import utcnow

log = logging.getLogger(__name__)

# A queue marker whose job folder has not appeared after this long belongs to a
# submission that died half-way; it is removed.
ORPHAN_MARKER_SECONDS = 3600.0


@dataclass(frozen=True)
class Claimed:
    record: JobRecord
    marker: RunningMarker


def make_done_marker(layout: Layout, record: JobRecord) -> bool:
    """Give a finished record its done marker. Returns True if one was created."""
    if not record.status.terminal:
        return False
    path = layout.done(record.status.value) / done_name(record)
    if path.exists():
        signal_dependents(layout, record.job_id)
        return False
    try:
        touch(path)
    except FileNotFoundError:  # an old store, or the index was removed
        path.parent.mkdir(parents=True, exist_ok=True)
        touch(path)
    signal_dependents(layout, record.job_id)  # jobs waiting for it: docs/ensembles.md
    return True


def _scheduling_order(key: QueueKey) -> tuple[int, int, str]:
    """QueueKey's own ordering (its fields in order), as a sort key."""
    return (key.rank, key.created_ns, key.job_id)


@dataclass(frozen=True)
class _Keys:
    names: list[str]  # the listing they were parsed from (the very list object)
    keys: list[QueueKey]  # in scheduling order
    parsed: dict[str, QueueKey | None]
    generation: int = 0  # changes whenever `keys` may have changed


class Queue:
    def __init__(self, layout: Layout, records: Records, listings: Listings) -> None:
        self.layout = layout
        self._records = records
        self._listings = listings
        self._keys = _Keys([], [], {})
        # running marker name -> parsed marker, from the last listing of `running`
        self._markers_parsed: dict[str, RunningMarker | None] = {}

    def queued(self) -> list[QueueKey]:
        """Queue markers in scheduling order: O(queued) at most, O(1) when unchanged
        (the folder's listing is reused by the rule of qforge.store.listings; names
        parsed before are not parsed again and an unchanged listing is not sorted
        again)."""
        names = self._listings.names(self.layout.queue)
        memo = self._keys
        if names is memo.names:
            return list(memo.keys)
        if names == memo.names:
            keys, parsed = memo.keys, memo.parsed
        else:
            parsed = {n: memo.parsed[n] if n in memo.parsed else QueueKey.parse(n)
                      for n in names}
            keys = [k for k in parsed.values() if k is not None]
            keys.sort(key=_scheduling_order)
        generation = memo.generation if keys is memo.keys else memo.generation + 1
        self._keys = _Keys(names, keys, parsed, generation)  # one assignment: thread-safe
        return list(keys)

    @property
    def generation(self) -> int:
        """A number that changes whenever the keys `queued()` returned last may have
        changed: a caller deriving something from them (the fair-share queue) skips
        the work when it has not moved."""
        return self._keys.generation

    def is_empty(self) -> bool:
        """Whether no job is queued: reads at most one entry of the queue folder."""
        try:
            with os.scandir(self.layout.queue) as entries:
                return next(entries, None) is None
        except FileNotFoundError:
            return True

    def running_markers(self) -> list[RunningMarker]:
        """Every running marker, listed afresh (a pass calls this several times, with
        hundreds of jobs running: a name parsed at the last listing is not parsed
        again; parsing is a function of the name alone)."""
        try:
            names = os.listdir(self.layout.running)
        except FileNotFoundError:
            return []
        before = self._markers_parsed
        parsed = {n: before[n] if n in before else RunningMarker.parse(n) for n in names}
        self._markers_parsed = parsed  # one assignment: safe across threads
        return [m for m in parsed.values() if m is not None]

    def claim(self, key: QueueKey, instance: str, placement: Placement, *,
              write: bool = True) -> Claimed | None:
        """Take a queued job for `instance`. Returns None when another claimant won,
        or the marker was stale (the job is not QUEUED, or unreadable: reported).

        The rename of the marker is the claim; with ``write=False`` the RUNNING record
        is returned but not written, and the caller writes it (`JobStore.write`) later.
        Until then the record still says QUEUED under a running marker, which recovery
        already handles (a claimant that died there: the job goes back to the queue)."""
        marker = RunningMarker(key.job_id, instance)
        src = self.layout.queue / key.name
        dst = self.layout.running / marker.name
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return None  # someone else claimed it
        try:
            record = self._records.read(key.job_id)
        except JobNotFound:
            if self.layout.job_dir(key.job_id).is_dir():
                # a submission renames a complete folder into place: this one lost its
                # record (deleted by hand, a damaged disk)
                log.error("Skipping job %s: its folder has no metadata.json", key.job_id)
                dst.unlink(missing_ok=True)
            else:
                self._put_back_or_drop(dst, src)
            return None
        except CorruptRecord as exc:
            log.error("Skipping job %s: %s", key.job_id, exc.reason)
            dst.unlink(missing_ok=True)
            return None
        if record.status is not Status.QUEUED or is_waiting(record):
            dst.unlink(missing_ok=True)  # stale index entry (a waiting job: not yet)
            if record.status.terminal:
                make_done_marker(self.layout, record)
            return None
        now = utcnow()
        running = record.evolve(
            status=Status.RUNNING,
            started_at=now,
            updated_at=now,
            placement=placement,
            attempts=record.attempts + 1,
            waiting_reason=None,
        )
        if write:
            try:
                self._records.write(running)
            except OSError:
                with contextlib.suppress(OSError):
                    os.rename(dst, src)  # not claimed after all: back in the queue
                raise
        return Claimed(running, marker)

    def _put_back_or_drop(self, dst: Path, src: Path) -> None:
        try:
            age = time.time() - dst.stat().st_mtime
        except FileNotFoundError:
            return
        if age > ORPHAN_MARKER_SECONDS:
            dst.unlink(missing_ok=True)
        else:
            os.rename(dst, src)  # submission still in progress

    def finish(self, claimed: Claimed, record: JobRecord) -> None:
        """Write a job's terminal record, mark it done, then drop its running marker.
        (A crash in between leaves a running marker on a terminal record: whoever
        recovers it drops the marker, and IndexKeeper.sync() adds the done marker.)"""
        self._records.write(record)
        make_done_marker(self.layout, record)
        (self.layout.running / claimed.marker.name).unlink(missing_ok=True)
        (self.layout.cancel / record.job_id).unlink(missing_ok=True)

    def requeue(self, record: JobRecord, marker: RunningMarker, *, count_attempt: bool) -> None:
        """Put a RUNNING job back in the queue (its runner stopped without a result)."""
        queued = record.evolve(
            status=Status.QUEUED,
            started_at=None,
            placement=None,
            attempts=record.attempts if count_attempt else max(0, record.attempts - 1),
            waiting_reason=None,  # a pending pod's words; a requeued job waits for no job
        )
        self._records.write(queued)
        touch(self.layout.queue / QueueKey.make(record.spec.priority, record.created_ns,
                                                record.job_id).name)
        (self.layout.running / marker.name).unlink(missing_ok=True)

    def take_over(self, marker: RunningMarker, instance: str) -> RunningMarker | None:
        """Move a dead owner's running marker to `instance` (one winner)."""
        new = RunningMarker(marker.job_id, instance)
        try:
            os.rename(self.layout.running / marker.name, self.layout.running / new.name)
        except FileNotFoundError:
            return None
        return new

    def drop_running_marker(self, marker: RunningMarker) -> None:
        (self.layout.running / marker.name).unlink(missing_ok=True)

    def cancel_queued(self, key: QueueKey, instance: str,
                      placement: Placement) -> JobRecord | None:
        """Cancel a job still in the queue: claim it, then record it cancelled before it
        started. Returns that record; None when another scheduler claimed it first."""
        claimed = self.claim(key, instance, placement)
        if claimed is None:
            return None
        record = claimed.record.cancelled_by_user(started=False)
        self.finish(claimed, record)
        return record
