"""A finished job run again as a new attempt of the same job (docs/retry.md).

The record goes back to QUEUED with its previous attempt appended to `history`; the
previous attempt's `result.json` and xtb's files move into `<job_id>/attempts/<n>/`, so
nothing reads them as the new attempt's. Two ways in:

- `Retries.again` (`qforge retry`, a user): the job is FAILED or CANCELLED, so no
  scheduler writes its record; two users retrying it at once are told apart by one
  rename of its done marker to `.qforge/retry/<job_id>` (one winner, on NFS too);
- `Retries.requeue_claimed` (the retry ladder, the scheduler that holds the claim).

Crash consistency (docs/store.md): the done marker goes first, the record next, the queue
marker last. A crash after the done marker left a terminal record with no index entry
(`IndexKeeper.sync` gives it its done marker back: the retry did not happen); after the
record, a QUEUED record with no queue marker (`sync` gives it one: the retry happened).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from qforge.record import Attempt, JobRecord, Status
from qforge.spec import JobSpec
from qforge.store.files import touch
from qforge.store.layout import Layout, QueueKey, RunningMarker
from qforge.store.queue import make_done_marker
from qforge.store.records import Records, done_name
from qforge_runner.harness import ARTIFACTS, RESULT_FILE
from qforge_runner.result import JobError
from qforge_runner.timestamps import utcnow

ATTEMPTS_DIR: Final = "attempts"  # <job_id>/attempts/<n>/: attempt n's files
RETRYABLE: Final = frozenset({Status.FAILED, Status.CANCELLED})
LADDER: Final = "ladder"  # Attempt.by of the automatic retries


def next_attempt(record: JobRecord, *, change: str, by: str, status: Status,
                 error: JobError | None, finished_at: str | None, files: str | None,
                 spec: JobSpec | None = None, rung: str | None = None) -> JobRecord:
    """The QUEUED record of the job's next attempt: the current one ends as `status`
    and goes into the history with what the next one changes. Pure."""
    done = Attempt(number=record.attempt, status=status, started_at=record.started_at,
                   finished_at=finished_at, error=error, change=change, by=by,
                   rung=rung, claims=record.attempts, files=files)
    return record.evolve(status=Status.QUEUED, started_at=None, finished_at=None,
                         result=None, error=None, placement=None, waiting_reason=None,
                         history=(*record.history, done),
                         spec=spec if spec is not None else record.spec)


def keep_files(job_dir: Path, number: int) -> str | None:
    """Move attempt `number`'s result.json and xtb's files into `attempts/<number>/`.
    Returns that folder relative to the job's, or None when there was nothing to keep.
    result.json moves first: once it is gone, no reader takes the rest for a result."""
    rel = f"{ATTEMPTS_DIR}/{number}"
    target = job_dir / rel
    moved = False
    for name in (RESULT_FILE, *ARTIFACTS):
        src = job_dir / name
        if not src.exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        os.replace(src, target / name)
        moved = True
    return rel if moved else None


class Retries:
    def __init__(self, layout: Layout, records: Records) -> None:
        self.layout = layout
        self._records = records

    def _claim_path(self, job_id: str) -> Path:
        return self.layout.index / "retry" / job_id

    def again(self, record: JobRecord, *, by: str, change: str) -> JobRecord | None:
        """Queue a FAILED or CANCELLED job again as its next attempt. Returns the QUEUED
        record; None when another party got there first (its record changed since
        `record` was read, or someone is retrying it this very moment)."""
        if record.status not in RETRYABLE:
            return None
        make_done_marker(self.layout, record)  # the index may have lost it
        marker = self.layout.done(record.status.value) / done_name(record)
        claim = self._claim_path(record.job_id)
        claim.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(marker, claim)  # the one winner among concurrent retries
        except FileNotFoundError:
            return None
        try:
            now = self._records.read(record.job_id)
            if now.status not in RETRYABLE or done_name(now) != marker.name:
                if now.status.terminal:
                    make_done_marker(self.layout, now)
                return None
            files = keep_files(self.layout.job_dir(now.job_id), now.attempt)
            (self.layout.cancel / now.job_id).unlink(missing_ok=True)  # a stale request
            queued = next_attempt(now, change=change, by=by, status=now.status,
                                  error=now.error, finished_at=now.finished_at, files=files)
            try:
                self._records.write(queued)
            except OSError:
                make_done_marker(self.layout, now)  # not retried after all
                raise
            touch(self.layout.queue / QueueKey.make(queued.spec.priority, queued.created_ns,
                                                    queued.job_id).name)
            return queued
        finally:
            with contextlib.suppress(OSError):
                claim.unlink()

    def requeue_claimed(self, ended: JobRecord, marker: RunningMarker, *, change: str,
                        rung: str, spec: JobSpec) -> JobRecord:
        """The retry ladder, by the scheduler holding the claim: `ended` (the record the
        run would have ended with) goes into the history and the job is queued again
        with `spec`. Written in the order of Queue.requeue (record, queue marker, then
        the running marker goes)."""
        files = keep_files(self.layout.job_dir(ended.job_id), ended.attempt)
        queued = next_attempt(ended, change=change, by=LADDER, status=ended.status,
                              error=ended.error, finished_at=ended.finished_at or utcnow(),
                              files=files, spec=spec, rung=rung)
        self._records.write(queued)
        touch(self.layout.queue / QueueKey.make(queued.spec.priority, queued.created_ns,
                                                queued.job_id).name)
        (self.layout.running / marker.name).unlink(missing_ok=True)
        return queued
