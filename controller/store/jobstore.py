"""The filesystem job store: records, queue index, claims, cancel requests.

Safe for several processes on several machines sharing the folder (NFS-style: rename
is atomic, locks may not be): every write is temp-file + fsync + rename, and every
state hand-over between processes is one rename.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from controller.ids import InvalidJobId, new_job_id, validate_job_id
from controller.record import JobRecord, Placement, Status, utcnow
from controller.store.layout import Layout, QueueKey, RunningMarker
from runner_image.atomic import write_text_atomic
from runner_image.result import JobError
from runner_image.spec import JobSpec

log = logging.getLogger(__name__)

# A queue marker whose job folder has not appeared after this long belongs to a
# submission that died half-way; it is removed.
ORPHAN_MARKER_SECONDS = 3600.0


class StoreError(Exception):
    """A problem with the store a user can act on."""


class JobNotFound(StoreError):
    pass


class CorruptRecord(StoreError):
    """metadata.json exists but cannot be read or validated."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id}: unreadable metadata.json ({reason})")
        self.job_id = job_id
        self.reason = reason


# queued(): reuse a listing while the queue folder is unchanged (see there).
QUEUE_MTIME_MARGIN = 1.0
QUEUE_RELIST_SECONDS = 10.0


@dataclass(frozen=True)
class _QueueMemo:
    sig: tuple[int, int]
    listed_wall: float
    listed_mono: float
    names: list[str]
    keys: list[QueueKey]
    parsed: dict[str, QueueKey | None]


@dataclass(frozen=True)
class Claimed:
    record: JobRecord
    marker: RunningMarker


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class JobStore:
    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root))
        self.root = self.layout.root
        # queued()'s memo: the last listing of the queue folder and its keys in order.
        self._queue_memo = _QueueMemo((0, 0), 0.0, 0.0, [], [], {})

    # ----------------------------------------------------------------- setup
    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.layout.ensure()
        except OSError as exc:
            raise StoreError(f"cannot use job store {self.root}: {exc.strerror}") from None

    @property
    def exists(self) -> bool:
        return self.layout.queue.is_dir()

    # --------------------------------------------------------------- records
    def read(self, job_id: str) -> JobRecord:
        try:
            validate_job_id(job_id)
        except InvalidJobId:
            raise JobNotFound(f"no such job: {job_id!r}") from None
        path = self.layout.metadata(job_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise JobNotFound(f"no such job: {job_id}") from None
        except OSError as exc:
            raise CorruptRecord(job_id, exc.strerror or str(exc)) from None
        try:
            return JobRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise CorruptRecord(job_id, _one_line(exc)) from None

    def write(self, record: JobRecord) -> None:
        write_text_atomic(
            self.layout.metadata(record.job_id), record.model_dump_json(indent=2) + "\n"
        )

    def job_ids(self) -> list[str]:
        """Every job folder's name (one directory listing, no reads)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and _is_job_id(n))

    def iter_records(self) -> Iterator[JobRecord | CorruptRecord]:
        """Every record, oldest id first; a corrupt one is yielded as its error."""
        for job_id in self.job_ids():
            if not self.layout.metadata(job_id).exists():
                continue
            try:
                yield self.read(job_id)
            except CorruptRecord as exc:
                yield exc
            except JobNotFound:
                continue

    # ---------------------------------------------------------------- submit
    def submit(self, spec: JobSpec, *, input_text: str, job_id: str | None = None) -> JobRecord:
        """Create a QUEUED job. The queue marker is made before the folder appears, so a
        job visible in the store always has its marker (a claim that finds a marker
        without its folder puts it back)."""
        self.ensure()
        if job_id is not None:
            validate_job_id(job_id)
            if self.layout.job_dir(job_id).exists():
                raise StoreError(f"job {job_id} already exists")
        for _ in range(20):
            jid = job_id or new_job_id(spec.name or spec.molecule.formula)
            if not self.layout.job_dir(jid).exists():
                break
        else:  # pragma: no cover - 20 random collisions in a row
            raise StoreError("could not find a free job id")
        now = utcnow()
        record = JobRecord(
            job_id=jid,
            status=Status.QUEUED,
            created_at=now,
            updated_at=now,
            created_ns=time.time_ns(),
            spec=spec,
        )
        staging = self.layout.incoming / f"{jid}.{os.getpid()}.{time.monotonic_ns()}"
        staging.mkdir(parents=True)
        try:
            write_text_atomic(staging / "input.xyz", input_text)
            write_text_atomic(staging / "metadata.json", record.model_dump_json(indent=2) + "\n")
            key = QueueKey.make(spec.priority, record.created_ns, jid)
            marker = self.layout.queue / key.name
            _touch(marker)
            try:
                os.rename(staging, self.layout.job_dir(jid))
            except OSError:
                marker.unlink(missing_ok=True)
                raise StoreError(f"job {jid} already exists") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return record

    # ----------------------------------------------------------------- queue
    def queued(self) -> list[QueueKey]:
        """Queue markers in scheduling order: O(queued) at most, O(1) when unchanged.

        A poll usually finds the queue as it left it (the cap is reached, or nothing
        was submitted), so the folder's listing is reused while the folder is unchanged:
        same inode and mtime, the mtime at least QUEUE_MTIME_MARGIN older than that
        listing (a change later than the listing must then carry a later mtime, even
        with coarse file-system timestamps), and the listing younger than
        QUEUE_RELIST_SECONDS (which bounds what NFS attribute caching or a clock skew
        could hide). Otherwise the folder is listed; names parsed before are not parsed
        again and an unchanged listing is not sorted again."""
        try:
            st = os.stat(self.layout.queue)
        except FileNotFoundError:
            return []
        sig = (st.st_ino, st.st_mtime_ns)
        memo = self._queue_memo
        if (memo.sig == sig and memo.listed_wall - st.st_mtime > QUEUE_MTIME_MARGIN
                and time.monotonic() - memo.listed_mono < QUEUE_RELIST_SECONDS):
            return list(memo.keys)
        listed_wall, listed_mono = time.time(), time.monotonic()
        try:
            names = os.listdir(self.layout.queue)
        except FileNotFoundError:
            return []
        if names == memo.names:
            keys = memo.keys
            parsed = memo.parsed
        else:
            parsed = {n: memo.parsed[n] if n in memo.parsed else QueueKey.parse(n)
                      for n in names}
            keys = [k for k in parsed.values() if k is not None]
            keys.sort(key=_scheduling_order)
        # one assignment: safe across threads
        self._queue_memo = _QueueMemo(sig, listed_wall, listed_mono, names, keys, parsed)
        return list(keys)

    def queue_empty(self) -> bool:
        """Whether no job is queued: reads at most one entry of the queue folder."""
        try:
            with os.scandir(self.layout.queue) as entries:
                return next(entries, None) is None
        except FileNotFoundError:
            return True

    def running_markers(self) -> list[RunningMarker]:
        try:
            names = os.listdir(self.layout.running)
        except FileNotFoundError:
            return []
        return [m for m in map(RunningMarker.parse, names) if m is not None]

    def claim(self, key: QueueKey, instance: str, placement: Placement) -> Claimed | None:
        """Take a queued job for `instance`. Returns None when another claimant won,
        or the marker was stale (the job is not QUEUED, or unreadable: reported)."""
        marker = RunningMarker(key.job_id, instance)
        src = self.layout.queue / key.name
        dst = self.layout.running / marker.name
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return None  # someone else claimed it
        try:
            record = self.read(key.job_id)
        except JobNotFound:
            self._put_back_or_drop(dst, src)
            return None
        except CorruptRecord as exc:
            log.error("Skipping job %s: %s", key.job_id, exc.reason)
            dst.unlink(missing_ok=True)
            return None
        if record.status is not Status.QUEUED:
            dst.unlink(missing_ok=True)  # stale index entry
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
        self.write(running)
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
        """Write a job's terminal record, then drop its running marker."""
        self.write(record)
        (self.layout.running / claimed.marker.name).unlink(missing_ok=True)
        (self.layout.cancel / record.job_id).unlink(missing_ok=True)

    def requeue(self, record: JobRecord, marker: RunningMarker, *, count_attempt: bool) -> None:
        """Put a RUNNING job back in the queue (its runner stopped without a result)."""
        queued = record.evolve(
            status=Status.QUEUED,
            started_at=None,
            placement=None,
            attempts=record.attempts if count_attempt else max(0, record.attempts - 1),
        )
        self.write(queued)
        _touch(self.layout.queue / QueueKey.make(record.spec.priority, record.created_ns,
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

    # ---------------------------------------------------------------- cancel
    def request_cancel(self, job_id: str) -> JobRecord:
        record = self.read(job_id)
        if not record.status.terminal:
            self.ensure()
            _touch(self.layout.cancel / job_id)
        return record

    def cancel_requests(self) -> list[str]:
        try:
            return sorted(os.listdir(self.layout.cancel))
        except FileNotFoundError:
            return []

    def cancel_requested(self, job_id: str) -> bool:
        return (self.layout.cancel / job_id).exists()

    def clear_cancel(self, job_id: str) -> None:
        (self.layout.cancel / job_id).unlink(missing_ok=True)

    def cancel_queued(self, key: QueueKey, instance: str, placement: Placement) -> bool:
        """Cancel a job still in the queue: claim it, then record CANCELLED."""
        claimed = self.claim(key, instance, placement)
        if claimed is None:
            return False
        record = claimed.record.evolve(
            status=Status.CANCELLED,
            finished_at=utcnow(),
            error=JobError(type="cancelled", message="cancelled by user before it started"),
        )
        self.finish(claimed, record)
        return True

    # ----------------------------------------------------------------- index
    def ensure_queue_marker(self, record: JobRecord) -> bool:
        """Make sure a QUEUED record has its marker. Returns True if one was created."""
        key = QueueKey.make(record.spec.priority, record.created_ns, record.job_id)
        path = self.layout.queue / key.name
        if path.exists():
            return False
        for marker in self.running_markers():
            if marker.job_id == record.job_id:
                return False
        _touch(path)
        return True


def _scheduling_order(key: QueueKey) -> tuple[int, int, str]:
    """QueueKey's own ordering (its fields in order), as a sort key."""
    return (key.rank, key.created_ns, key.job_id)


def _is_job_id(name: str) -> bool:
    try:
        validate_job_id(name)
    except InvalidJobId:
        return False
    return True


def _touch(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)


def load_result_json(job_dir: Path) -> dict[str, object] | None:
    """The runner's result.json, or None when absent or unreadable."""
    try:
        data = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
