"""The filesystem job store: records, queue index, claims, cancel requests.

Safe for several processes on several machines sharing the folder (NFS-style: rename
is atomic, locks may not be): every write is temp-file + fsync + rename, and every
state hand-over between processes is one rename.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qforge.ids import JOB_ID_RE, InvalidJobId, new_job_id, validate_job_id
from qforge.record import MAX_OWNER_LENGTH, UNKNOWN_OWNER, JobRecord, Placement, Status
from qforge.store.dedup import claim_name, input_hash
from qforge.store.groups import default_group, validate_group
from qforge.store.layout import TOPOLOGY_FILE, DoneKey, Layout, QueueKey, RunningMarker
from qforge_runner.atomic import fsync_dir, write_bytes_atomic
from qforge_runner.errors import validation_line
from qforge_runner.result import RunReport
from qforge_runner.spec import JobSpec
from qforge_runner.timestamps import utcnow

log = logging.getLogger(__name__)

# A queue marker whose job folder has not appeared after this long belongs to a
# submission that died half-way; it is removed.
ORPHAN_MARKER_SECONDS = 3600.0
# A dedup claim naming a job folder that has not appeared: its submitter is still
# writing it (wait up to CLAIM_WAIT_SECONDS, by this process's clock), or died (the
# claim is older than CLAIM_ORPHAN_SECONDS, or the wait ran out): the claim is dead.
CLAIM_WAIT_SECONDS = 30.0
CLAIM_POLL_SECONDS = 0.005
CLAIM_ORPHAN_SECONDS = 600.0
LIVE_STATUSES = frozenset({"QUEUED", "RUNNING", "COMPLETED"})
# What submit_batch takes: (spec, input.xyz text) or (spec, input.xyz text, topology.json
# text or None); the topology, when there is one, is kept beside input.xyz.
SubmitItem = tuple[JobSpec, str] | tuple[JobSpec, str, str | None]


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
class _Listing:
    sig: tuple[int, int]
    listed_wall: float
    listed_mono: float
    names: list[str]


# A done marker's job id starts after the 20-digit stamp and its dash.
DONE_ID_AT = 21


def finished_ns(record: JobRecord) -> int:
    """When a record ended, in ns since the epoch (its finished_at, else updated_at)."""
    stamp = record.finished_at or record.updated_at
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


@dataclass(frozen=True)
class Submitted:
    """One item of a batch submission."""

    record: JobRecord  # the new job, or the existing job it duplicates
    duplicate_of: str | None  # the existing job's id when deduplicated, else None


@dataclass(frozen=True)
class Claimed:
    record: JobRecord
    marker: RunningMarker


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return validation_line(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# The records this store object wrote itself, kept to skip validating them again when
# they are read back unchanged (see JobStore.read): at most this many, and this many
# bytes of serialized records in all.
WRITTEN_CACHE_ENTRIES = 512
WRITTEN_CACHE_BYTES = 16 * 1024 * 1024


class _Written:
    """The last records a store object wrote: job id -> (the exact bytes written, the
    validated record they serialize). Thread-safe (the worker writes on one thread and
    reads on another); least recently written first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[bytes, JobRecord]] = OrderedDict()
        self._bytes = 0

    def put(self, job_id: str, raw: bytes, record: JobRecord) -> None:
        with self._lock:
            self._drop(job_id)
            if len(raw) > WRITTEN_CACHE_BYTES // 8:
                return  # a huge molecule: not worth holding
            self._items[job_id] = (raw, record)
            self._bytes += len(raw)
            while len(self._items) > WRITTEN_CACHE_ENTRIES or self._bytes > WRITTEN_CACHE_BYTES:
                self._drop(next(iter(self._items)))

    def get(self, job_id: str, raw: bytes) -> JobRecord | None:
        with self._lock:
            item = self._items.get(job_id)
        return item[1] if item is not None and item[0] == raw else None

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        item = self._items.pop(job_id, None)
        if item is not None:
            self._bytes -= len(item[0])


class JobStore:
    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root))
        self.root = self.layout.root
        # queued()'s memo: the last listing of the queue folder and its keys in order.
        self._queue_memo = _QueueMemo((0, 0), 0.0, 0.0, [], [], {})
        # running marker name -> parsed marker, from the last listing of `running`
        self._markers_parsed: dict[str, RunningMarker | None] = {}
        self._listings: dict[Path, _Listing] = {}
        self._written = _Written()

    # ----------------------------------------------------------------- setup
    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.layout.ensure()
        except OSError as exc:
            raise StoreError(f"cannot use job store {self.root}: {exc.strerror}") from None

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
        known = self._written.get(job_id, raw)
        if known is not None:
            return known
        try:
            return JobRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise CorruptRecord(job_id, _one_line(exc)) from None

    def write(self, record: JobRecord) -> None:
        """Replace a job's record atomically and durably.

        The bytes written and the record are remembered (a few hundred, `_Written`): a
        `read` that finds exactly those bytes on disk returns that record without
        validating it again. That is safe because validation is a pure function of the
        bytes, and these bytes are the serialization of a record that was validated
        when it was made; anything else on disk — another writer's record, a hand edit,
        a corrupted file — differs in its bytes and is validated in full. (The worker
        reads back each RUNNING record it wrote when the job ends: that read no longer
        validates the molecule again.)"""
        raw = (record.model_dump_json(indent=2) + "\n").encode()
        self._written.forget(record.job_id)  # until the new bytes are in place
        write_bytes_atomic(self.layout.metadata(record.job_id), raw)
        if record.status.terminal:
            return  # read back rarely; keep the memory for running jobs
        self._written.put(record.job_id, raw, record)

    def job_ids(self) -> list[str]:
        """Every job folder's name, sorted (one directory listing, no reads)."""
        return sorted(self.job_id_set())

    def job_id_set(self) -> set[str]:
        """Every job folder's name (one listing; `.qforge` and other names that are not
        job ids left out)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        match = JOB_ID_RE.fullmatch
        return {n for n in names if match(n)}

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
    def submit(self, spec: JobSpec, *, input_text: str, job_id: str | None = None,
               group: str | None = None, owner: str = UNKNOWN_OWNER,
               topology: str | None = None) -> JobRecord:
        """Create one QUEUED job owned by `owner`, always (a duplicate of a live job is
        run anyway, as `submit_batch(force=True)`); `topology`, when given, is kept as its
        topology.json. The queue marker is made before the folder appears, so a job
        visible in the store always has its marker (a claim that finds a marker without
        its folder puts it back)."""
        _check_owner(owner)
        self.ensure()
        if group is not None:
            validate_group(group)
            self.layout.group(group).mkdir(exist_ok=True)
        if job_id is not None:
            validate_job_id(job_id)
            if self.layout.job_dir(job_id).exists():
                raise StoreError(f"job {job_id} already exists")
        return self._submit_one(spec, input_text, group=group, force=True,
                                job_id=job_id, owner=owner, topology=topology).record

    def submit_batch(self, items: Sequence[SubmitItem], *, group: str,
                     force: bool = False,
                     on_progress: Callable[[int], None] | None = None,
                     owner: str = UNKNOWN_OWNER) -> list[Submitted]:
        """Create one job per (spec, input xyz text[, topology.json text or None]), all in
        `group`, owned by `owner`; the topology, when given, is kept as the job's
        topology.json. An item whose canonical input is held by a QUEUED, RUNNING or
        COMPLETED job is not created again: that job joins `group` and is returned with
        `duplicate_of` set, keeping its own owner (unless `force`). `on_progress(n)` is
        called after each item is written."""
        validate_group(group)
        _check_owner(owner)
        self.ensure()
        self.layout.group(group).mkdir(exist_ok=True)
        out: list[Submitted] = []
        for n, (spec, text, *rest) in enumerate(items, start=1):
            out.append(self._submit_one(spec, text, group=group, force=force, owner=owner,
                                        topology=rest[0] if rest else None))
            if on_progress is not None:
                on_progress(n)
        return out

    def _submit_one(self, spec: JobSpec, input_text: str, *, group: str | None,
                    force: bool, job_id: str | None = None,
                    owner: str = UNKNOWN_OWNER, topology: str | None = None) -> Submitted:
        digest = input_hash(spec)
        waited = 0.0
        while True:
            gen, holder = self.dedup_holder(digest)
            state = "free" if holder is None else self.holder_state(holder, digest, gen)
            if state == "pending" and waited < CLAIM_WAIT_SECONDS:
                time.sleep(CLAIM_POLL_SECONDS)  # its submitter is writing it right now
                waited += CLAIM_POLL_SECONDS
                continue
            if state == "live" and not force and holder is not None:
                existing = self.read(holder)
                if group is not None:
                    self.join_group(existing, group)
                return Submitted(existing, holder)
            # free, dead (FAILED, CANCELLED, gone) or forced past a live one
            take = None if state == "live" else gen + 1
            created = self._create(spec, input_text, group=group, digest=digest,
                                   claim_gen=take, job_id=job_id, owner=owner,
                                   topology=topology)
            if created is not None:
                return Submitted(created, None)
            waited = 0.0  # another submitter took that generation first: look again

    def dedup_holder(self, digest: str) -> tuple[int, str | None]:
        """The highest generation of a hash's claim and the job id it names
        ((-1, None) when never claimed). O(generations): 1 for most molecules."""
        gen, holder = -1, None
        while True:
            try:
                target = os.readlink(self.layout.dedup / claim_name(digest, gen + 1))
            except FileNotFoundError:
                return gen, holder
            gen, holder = gen + 1, target

    def holder_state(self, job_id: str, digest: str, gen: int) -> str:
        """live: QUEUED/RUNNING/COMPLETED with that input; dead: anything else;
        pending: no folder yet and the claim is young (its submission is under way)."""
        try:
            data = json.loads(self.layout.metadata(job_id).read_bytes())
            status = data["status"]
            same = data.get("input_hash") == digest
        except FileNotFoundError:
            try:
                age = time.time() - os.lstat(
                    self.layout.dedup / claim_name(digest, gen)).st_mtime
            except FileNotFoundError:
                return "dead"
            return "pending" if age < CLAIM_ORPHAN_SECONDS else "dead"
        except (OSError, ValueError, KeyError, TypeError):
            return "dead"
        return "live" if same and status in LIVE_STATUSES else "dead"

    def _create(self, spec: JobSpec, input_text: str, *, group: str | None, digest: str,
                claim_gen: int | None, job_id: str | None,
                owner: str = UNKNOWN_OWNER, topology: str | None = None) -> JobRecord | None:
        """Write a new QUEUED job; None when the dedup claim `claim_gen` was taken by
        another submitter first (nothing is left behind then)."""
        # Paths as strings: a batch of 100,000 builds ten paths per job, and pathlib's
        # objects cost more than the system calls they name.
        root, index = os.fspath(self.root), os.fspath(self.layout.index)
        for _ in range(20):
            jid = job_id or new_job_id(spec.name or spec.molecule.formula)
            job_dir = f"{root}/{jid}"
            if not os.path.exists(job_dir):
                break
        else:  # pragma: no cover - 20 random collisions in a row
            raise StoreError("could not find a free job id")
        now = utcnow()
        record = JobRecord(job_id=jid, status=Status.QUEUED, created_at=now, updated_at=now,
                           created_ns=time.time_ns(), spec=spec, group=group,
                           input_hash=digest, owner=owner)
        staging = f"{index}/incoming/{jid}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            os.mkdir(staging)
        except FileNotFoundError:
            os.makedirs(staging)
        markers: list[str] = []
        try:
            _write_durable(f"{staging}/input.xyz", input_text.encode())
            if topology is not None:
                _write_durable(f"{staging}/{TOPOLOGY_FILE}", topology.encode())
            _write_durable(f"{staging}/metadata.json",
                           (record.model_dump_json(indent=2) + "\n").encode())
            fsync_dir(staging)
            if claim_gen is not None:
                try:
                    os.symlink(jid, f"{index}/dedup/{claim_name(digest, claim_gen)}")
                except FileExistsError:
                    return None
            if group is not None:
                markers.append(f"{index}/groups/{group}/{jid}")
            markers.append(
                f"{index}/queue/{QueueKey.make(spec.priority, record.created_ns, jid).name}")
            for marker in markers:
                _touch(marker)
            try:
                os.rename(staging, job_dir)
            except OSError:
                # (A dedup claim is never removed: one naming a folder that never
                # appears is judged dead by the next submitter of that input.)
                for marker in markers:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(marker)
                raise StoreError(f"job {jid} already exists") from None
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging, ignore_errors=True)
        return record

    # ---------------------------------------------------------------- groups
    def join_group(self, record: JobRecord, group: str) -> bool:
        """Count an existing job in `group` too. The index marker is made first and the
        membership file in the job's folder last: that file is the commit point (a
        reader of the group index checks it), and it never touches metadata.json, which
        the scheduler owns. Returns False when the job was already a member."""
        if self.in_group(record, group):
            return False
        self.layout.group(group).mkdir(parents=True, exist_ok=True)
        _touch(self.layout.group(group) / record.job_id)
        folder = self.layout.memberships(record.job_id)
        folder.mkdir(exist_ok=True)
        _touch(folder / group)
        return True

    def in_group(self, record: JobRecord, group: str) -> bool:
        return record.group == group or (
            self.layout.memberships(record.job_id) / group).exists()

    def groups_of(self, record: JobRecord) -> list[str]:
        """Every group a job counts in: its own, then those it joined."""
        try:
            extra = sorted(os.listdir(self.layout.memberships(record.job_id)))
        except (FileNotFoundError, NotADirectoryError):
            extra = []
        own = [record.group] if record.group else []
        return own + [g for g in extra if g != record.group]

    def group_exists(self, group: str) -> bool:
        return self.layout.group(group).is_dir()

    def group_ids(self, group: str) -> list[str]:
        """The job ids in a group's index (one listing: O(group))."""
        try:
            return sorted(n for n in os.listdir(self.layout.group(group)) if _is_job_id(n))
        except FileNotFoundError:
            return []

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
        is returned but not written, and the caller writes it (`write`) later. Until
        then the record still says QUEUED under a running marker, which recovery
        already handles (a claimant that died there: the job goes back to the queue)."""
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
        if record.status is not Status.QUEUED:
            dst.unlink(missing_ok=True)  # stale index entry
            if record.status.terminal:
                self.ensure_done_marker(record)
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
                self.write(running)
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
        self.write(record)
        self.ensure_done_marker(record)
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

    # ---------------------------------------------------------------- delete
    def deletable(self, job_id: str) -> JobRecord:
        """The record of a job `delete` may remove; JobNotFound, CorruptRecord, or
        NotFinished (a queued or running job: cancel it first) otherwise."""
        record = self.read(job_id)
        if not record.status.terminal:
            raise NotFinished(f"job {job_id} is {record.status.value}: only a finished job "
                              "can be deleted (cancel it first)")
        return record

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job: its folder and every index entry naming it (done
        marker, group markers, a leftover cancel request). A submission of the same input
        afterwards runs it again: the dedup claim naming it is aged so that the next
        submitter judges it dead at once (`holder_state`) rather than waiting for a
        folder that will not come. Returns the deleted record."""
        record = self.deletable(job_id)
        if record.input_hash is not None:
            gen = 0
            while True:
                claim = self.layout.dedup / claim_name(record.input_hash, gen)
                try:
                    target = os.readlink(claim)
                except (FileNotFoundError, OSError):
                    break
                if target == job_id:
                    os.utime(claim, (0, 0), follow_symlinks=False)
                gen += 1
        # Out of every listing in one rename, then removed at leisure.
        gone = self.layout.incoming / f"{job_id}.deleted.{os.getpid()}.{time.monotonic_ns()}"
        self.layout.incoming.mkdir(parents=True, exist_ok=True)
        groups = self.groups_of(record)
        os.rename(self.layout.job_dir(job_id), gone)
        self._written.forget(job_id)
        done = self.layout.done(record.status.value) / DoneKey(
            finished_ns(record), job_id).name
        for marker in (done, self.layout.cancel / job_id,
                       *(self.layout.group(g) / job_id for g in groups)):
            marker.unlink(missing_ok=True)
        shutil.rmtree(gone, ignore_errors=True)
        return record

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

    # ----------------------------------------------------------------- index
    def ensure_done_marker(self, record: JobRecord) -> bool:
        """Give a finished record its done marker. Returns True if one was created."""
        if not record.status.terminal:
            return False
        path = self.layout.done(record.status.value) / DoneKey(
            finished_ns(record), record.job_id).name
        if path.exists():
            return False
        try:
            _touch(path)
        except FileNotFoundError:  # an old store, or the index was removed
            path.parent.mkdir(parents=True, exist_ok=True)
            _touch(path)
        return True

    def listing(self, folder: Path) -> list[str]:
        """The names in an index folder; the last listing is reused while the folder is
        unchanged, by the rule queued() documents."""
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            return []
        sig = (st.st_ino, st.st_mtime_ns)
        memo = self._listings.get(folder)
        if (memo is not None and memo.sig == sig
                and memo.listed_wall - st.st_mtime > QUEUE_MTIME_MARGIN
                and time.monotonic() - memo.listed_mono < QUEUE_RELIST_SECONDS):
            return memo.names
        listed_wall, listed_mono = time.time(), time.monotonic()
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        self._listings[folder] = _Listing(sig, listed_wall, listed_mono, names)
        return names

    def done_names(self, status: Status) -> list[str]:
        """Done markers of one terminal status (names: DoneKey)."""
        return self.listing(self.layout.done(status.value))

    def finished_ids(self, status: Status) -> list[str]:
        return [n[DONE_ID_AT:] for n in self.done_names(status) if len(n) > DONE_ID_AT]

    def ids_with_status(self, status: Status) -> list[str]:
        """The job ids the index holds for a status: O(jobs with that status)."""
        if status is Status.QUEUED:
            return [k.job_id for k in self.queued()]
        if status is Status.RUNNING:
            return [m.job_id for m in self.running_markers()]
        return self.finished_ids(status)

    def counts(self, group: str | None = None) -> dict[Status, int]:
        """Jobs per status. The whole store: from the index alone (one listing per
        status, each reused while unchanged; no record is read). A group: the statuses
        of its members (O(group))."""
        if group is not None:
            out = dict.fromkeys(Status, 0)
            for status in self.group_statuses(group).values():
                out[status] += 1
            return out
        out = {s: len(self.done_names(s)) for s in Status if s.terminal}
        out[Status.RUNNING] = len(self.running_markers())
        out[Status.QUEUED] = len(self.queued())
        return {s: out[s] for s in Status}

    def group_statuses(self, group: str) -> dict[str, Status]:
        return {jid: st for jid, (st, _) in self.group_states(group).items()}

    def group_states(self, group: str,
                     ids: Iterable[str] | None = None) -> dict[str, tuple[Status, str | None]]:
        """Each member's status and finished_at, from its metadata.json without
        validating all of it (members whose folder is gone, or whose joining never
        completed, are left out). `ids`: only those of the group's index."""
        out: dict[str, tuple[Status, str | None]] = {}
        for job_id in self.group_ids(group) if ids is None else ids:
            data = self.peek(job_id)
            if data is None:
                continue
            try:
                status = Status(data["status"])
            except (KeyError, ValueError):
                continue
            if data.get("group") == group or (
                    self.layout.memberships(job_id) / group).exists():
                finished = data.get("finished_at")
                out[job_id] = (status, finished if isinstance(finished, str) else None)
        return out

    def peek(self, job_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.layout.metadata(job_id).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _selected_ids(self, status: Status | None, group: str | None) -> list[str]:
        """The candidates of a selection, from the indexes: a group's members, a
        status's index entries, or every job folder."""
        if group is not None:
            return list(self.group_ids(group))
        if status is not None:
            return sorted(set(self.ids_with_status(status)))
        return self.job_ids()

    def select(self, *, status: Status | None = None,
               group: str | None = None) -> Iterator[JobRecord | CorruptRecord]:
        """The records of one status and/or group, reading only those (and, for a
        status, only the index's candidates; a record's own status decides)."""
        for job_id in self._selected_ids(status, group):
            try:
                record = self.read(job_id)
            except JobNotFound:
                continue
            except CorruptRecord as exc:
                yield exc
                continue
            if status is not None and record.status is not status:
                continue
            if group is not None and not self.in_group(record, group):
                continue
            yield record

    def ensure_running_marker(self, record: JobRecord) -> bool:
        """Give a RUNNING record whose marker was lost (a deleted index) the marker of
        the instance its placement names, so that the owner's death is noticed. Checked
        again afterwards: a job that finished meanwhile loses the marker again."""
        instance = record.placement.instance if record.placement else None
        if record.status is not Status.RUNNING or not instance:
            return False
        if any(m.job_id == record.job_id for m in self.running_markers()):
            return False
        path = self.layout.running / RunningMarker(record.job_id, instance).name
        _touch(path)
        try:
            now = self.read(record.job_id)
        except StoreError:
            path.unlink(missing_ok=True)
            return False
        if now.status is not Status.RUNNING:
            path.unlink(missing_ok=True)
            self.ensure_done_marker(now)
            return False
        return True

    def ensure_dedup_claim(self, record: JobRecord) -> bool:
        """Make a live record the holder of its input when no live job holds it (a
        folder copied in, a lost index). Returns True if it now holds a new claim."""
        digest = record.input_hash
        if not digest or record.status.value not in LIVE_STATUSES:
            return False
        gen, holder = self.dedup_holder(digest)
        if holder == record.job_id or (
                holder is not None and self.holder_state(holder, digest, gen) != "dead"):
            return False
        try:
            os.symlink(record.job_id, self.layout.dedup / claim_name(digest, gen + 1))
        except FileExistsError:
            return False  # a submitter got there first: that job holds the input
        except FileNotFoundError:
            self.layout.dedup.mkdir(parents=True, exist_ok=True)
            return self.ensure_dedup_claim(record)
        return True

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
                yield CorruptRecord(job_id, _one_line(exc))
                continue
            if status is not None and current is not status:
                continue
            if group is not None and data.get("group") != group and not (
                    self.layout.memberships(job_id) / group).exists():
                continue
            data.setdefault("owner", UNKNOWN_OWNER)  # written before owners existed
            yield data

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


def _check_owner(owner: str) -> None:
    """Refuse an owner a record cannot hold before anything of a submission is written."""
    if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER_LENGTH:
        raise StoreError(f"invalid owner {owner!r}: 1 to {MAX_OWNER_LENGTH} characters")


def _is_job_id(name: str) -> bool:
    try:
        validate_job_id(name)
    except InvalidJobId:
        return False
    return True


def _write_durable(path: str | Path, data: bytes) -> None:
    """Write a new file and fsync it (in a private staging folder: no temp file needed,
    the folder's rename into the store publishes it). Plain system calls: a buffered
    file object would add an fstat, an ioctl and lseeks to each of 200,000 files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(path: str | Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)


def load_result_json(job_dir: Path) -> dict[str, object] | None:
    """The runner's result.json, or None when absent or unreadable."""
    try:
        data = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_report(job_dir: Path) -> RunReport | None:
    """The runner's result.json as a RunReport, or None when absent, unreadable or not a
    report (a damaged file, or one of another version)."""
    data = load_result_json(job_dir)
    if data is None:
        return None
    try:
        return RunReport.model_validate(data)
    except ValidationError:
        return None


__all__ = ["Claimed", "CorruptRecord", "JobNotFound", "JobStore", "StoreError", "Submitted",
           "default_group", "load_report", "load_result_json", "validate_group"]
