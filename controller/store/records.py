"""Job records: `<job_id>/metadata.json`, the single source of truth (docs/store.md).

Every write is temp file + fsync + rename; a record this object wrote itself and finds
again byte for byte is not validated a second time (`_Written`, `Records.read`).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qforge.ids import JOB_ID_RE, InvalidJobId, validate_job_id
from qforge.record import JobRecord
from qforge.store.errors import CorruptRecord, JobNotFound, StoreError, one_line
from qforge.store.layout import DoneKey, Layout
from qforge_runner.atomic import write_bytes_atomic
from qforge_runner.result import RunReport

# The records this store object wrote itself, kept to skip validating them again when
# they are read back unchanged (see Records.read): at most this many, and this many
# bytes of serialized records in all.
WRITTEN_CACHE_ENTRIES = 512
WRITTEN_CACHE_BYTES = 16 * 1024 * 1024


def finished_ns(record: JobRecord) -> int:
    """When a record ended, in ns since the epoch (its finished_at, else updated_at)."""
    stamp = record.finished_at or record.updated_at
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def done_name(record: JobRecord) -> str:
    """The name of a finished record's done marker."""
    return DoneKey(finished_ns(record), record.job_id).name


def serialize(record: JobRecord) -> bytes:
    """A record as metadata.json holds it."""
    return (record.model_dump_json(indent=2) + "\n").encode()


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


class Records:
    """Reading and writing the records of one store."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.root = layout.root
        self._written = _Written()

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.layout.ensure()
        except OSError as exc:
            raise StoreError(f"cannot use job store {self.root}: {exc.strerror}") from None

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
            raise CorruptRecord(job_id, one_line(exc)) from None

    def write(self, record: JobRecord) -> None:
        """Replace a job's record atomically and durably (JobStore.write says more)."""
        raw = serialize(record)
        self._written.forget(record.job_id)  # until the new bytes are in place
        write_bytes_atomic(self.layout.metadata(record.job_id), raw)
        if record.status.terminal:
            return  # read back rarely; keep the memory for running jobs
        self._written.put(record.job_id, raw, record)

    def forget(self, job_id: str) -> None:
        """Drop what this object remembers of a job's record (its folder is going)."""
        self._written.forget(job_id)

    def peek(self, job_id: str) -> dict[str, Any] | None:
        """A record as the JSON object its file holds, not validated (None: unreadable)."""
        try:
            data = json.loads(self.layout.metadata(job_id).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

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
        for job_id in sorted(self.job_id_set()):
            if not self.layout.metadata(job_id).exists():
                continue
            try:
                yield self.read(job_id)
            except CorruptRecord as exc:
                yield exc
            except JobNotFound:
                continue


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
