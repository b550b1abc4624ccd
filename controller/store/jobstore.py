"""The filesystem job store: a small facade over one module per concern.

Safe for several processes on several machines sharing the folder (NFS-style: rename
is atomic, locks may not be): every write is temp-file + fsync + rename, and every
state hand-over between processes is one rename (docs/store.md).

`JobStore` itself reads and writes records, submits and deletes jobs; each other
concern is an attribute holding the object that owns it:

    store.queue      the queue and its claims (qforge.store.queue)
    store.cancels    cancel requests (qforge.store.cancels)
    store.groups     group membership and the group index (qforge.store.groups)
    store.dedup      the dedup claims (qforge.store.dedup)
    store.repair     the markers a record implies, made when missing (qforge.store.markers)
    store.queries    counts and selections over the indexes (qforge.store.queries)
    store.waiting    jobs waiting for others (qforge.store.waiting)
    store.retries    a finished job queued again as a new attempt (qforge.store.retries)

The store's one listing cache (qforge.store.listings) is shared by the queue and the
queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from qforge.record import UNKNOWN_OWNER, JobRecord
from qforge.spec import JobSpec
from qforge.store.cancels import CancelRequests
from qforge.store.dedup import DedupIndex
from qforge.store.deletion import Deletion
from qforge.store.errors import CorruptRecord, JobNotFound, NotFinished, StoreError
from qforge.store.groups import Groups, default_group, validate_group
from qforge.store.layout import Layout
from qforge.store.listings import Listings
from qforge.store.markers import IndexRepair
from qforge.store.queries import Queries
from qforge.store.queue import Claimed, Queue
from qforge.store.records import Records, finished_ns, load_report, load_result_json
from qforge.store.retries import Retries
from qforge.store.submission import Submission, SubmitItem, Submitted
from qforge.store.waiting import WaitingIndex


class JobStore:
    def __init__(self, root: Path | str) -> None:
        self.layout = Layout(Path(root))
        self.root = self.layout.root
        self._records = Records(self.layout)
        listings = Listings()
        self.queue = Queue(self.layout, self._records, listings)
        self.cancels = CancelRequests(self.layout, self._records)
        self.groups = Groups(self.layout, self._records)
        self.dedup = DedupIndex(self.layout)
        self.waiting = WaitingIndex(self.layout, listings)
        self.repair = IndexRepair(self.layout, self._records, self.queue, self.waiting)
        self.queries = Queries(self.layout, self._records, listings, self.queue, self.groups,
                               self.waiting)
        self._submission = Submission(self.layout, self._records, self.dedup, self.groups,
                                      self.waiting)
        self._deletion = Deletion(self.layout, self._records, self.dedup, self.groups)
        self.retries = Retries(self.layout, self._records)

    def ensure(self) -> None:
        """Create the store and its index folders (StoreError when it cannot be used)."""
        self._records.ensure()

    # --------------------------------------------------------------- records
    def read(self, job_id: str) -> JobRecord:
        """A job's record, validated (JobNotFound, CorruptRecord): see `write`."""
        return self._records.read(job_id)

    def write(self, record: JobRecord) -> None:
        """Replace a job's record atomically and durably.

        The bytes written and the record are remembered (a few hundred): a `read` that
        finds exactly those bytes on disk returns that record without validating it
        again. That is safe because validation is a pure function of the bytes, and
        these bytes are the serialization of a record that was validated when it was
        made; anything else on disk — another writer's record, a hand edit, a corrupted
        file — differs in its bytes and is validated in full. (The worker reads back
        each RUNNING record it wrote when the job ends: that read no longer validates
        the molecule again.)"""
        self._records.write(record)

    def peek(self, job_id: str) -> dict[str, Any] | None:
        """A record as the JSON object its file holds, not validated (None: unreadable)."""
        return self._records.peek(job_id)

    def job_ids(self) -> list[str]:
        """Every job folder's name, sorted (one directory listing, no reads)."""
        return sorted(self._records.job_id_set())

    def job_id_set(self) -> set[str]:
        """Every job folder's name (one listing; names that are not job ids left out)."""
        return self._records.job_id_set()

    def iter_records(self) -> Iterator[JobRecord | CorruptRecord]:
        """Every record, oldest id first; a corrupt one is yielded as its error."""
        return self._records.iter_records()

    # ---------------------------------------------------------------- submit
    def submit(self, spec: JobSpec, *, input_text: str, job_id: str | None = None,
               group: str | None = None, owner: str = UNKNOWN_OWNER,
               topology: str | None = None) -> JobRecord:
        """Create one QUEUED job owned by `owner`, always (a duplicate of a live job is
        run anyway, as `submit_batch(force=True)`); `topology`, when given, is kept as
        its topology.json. The queue marker is made before the folder appears, so a job
        visible in the store always has its marker (a claim that finds a marker without
        its folder puts it back)."""
        return self._submission.submit(spec, input_text=input_text, job_id=job_id,
                                       group=group, owner=owner, topology=topology)

    def submit_batch(self, items: Sequence[SubmitItem], *, group: str,
                     force: bool = False,
                     on_progress: Callable[[int], None] | None = None,
                     owner: str = UNKNOWN_OWNER) -> list[Submitted]:
        """Create one job per (spec, input xyz text[, topology.json text or None[, molecule
        key or None]]), all in `group`, owned by `owner`; the topology, when given, is
        kept as the job's topology.json, the key as its record's `molecule`. An item whose
        canonical input is held by a QUEUED, RUNNING or COMPLETED job is not created
        again: that job joins `group` and is returned with `duplicate_of` set, keeping its
        own owner and key (unless `force`). `on_progress(n)` is
        called after each item is written."""
        return self._submission.submit_batch(items, group=group, force=force,
                                             on_progress=on_progress, owner=owner)

    def submit_follow_up(self, spec: JobSpec, *, input_text: str,
                         depends_on: tuple[str, ...], molecule: str | None, group: str,
                         owner: str = UNKNOWN_OWNER,
                         topology: str | None = None) -> Submitted:
        """Create a job that waits for `depends_on` and then starts from the best of
        them (qforge.scheduling.dependencies); the same step on the same parents, while
        live, is returned instead (`duplicate_of`) and joins `group`."""
        return self._submission.submit_follow_up(
            spec, input_text, depends_on=depends_on, molecule=molecule, group=group,
            owner=owner, topology=topology)

    # ---------------------------------------------------------------- delete
    def deletable(self, job_id: str) -> JobRecord:
        """The record of a job `delete` may remove; JobNotFound, CorruptRecord, or
        NotFinished (a queued or running job: cancel it first) otherwise."""
        return self._deletion.deletable(job_id)

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job, its folder and every index entry naming it; its input
        runs again when submitted again. Returns the deleted record."""
        return self._deletion.delete(job_id)


__all__ = ["Claimed", "CorruptRecord", "JobNotFound", "JobStore", "NotFinished", "StoreError",
           "Submitted", "default_group", "finished_ns", "load_report", "load_result_json",
           "validate_group"]
