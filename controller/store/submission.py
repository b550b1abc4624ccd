"""Submission: new QUEUED jobs, deduplicated against the live holder of their input.

A job's files are written and fsynced in a private staging folder under `incoming/`,
its dedup claim is taken, its group and queue markers are made, and the staging folder
is renamed into the store: that rename is the commit point (docs/store.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qforge.ids import new_job_id, validate_job_id
from qforge.record import MAX_OWNER_LENGTH, UNKNOWN_OWNER, JobRecord, Status
from qforge.spec import JobSpec
from qforge.store.dedup import DedupIndex, input_hash
from qforge.store.errors import StoreError
from qforge.store.files import touch, write_durable
from qforge.store.groups import Groups, validate_group
from qforge.store.layout import DONE_STATUSES, TOPOLOGY_FILE, Layout, QueueKey
from qforge.store.records import Records, serialize
from qforge.store.waiting import WaitingIndex, touch_in, waiting_reason
from qforge_runner.atomic import fsync_dir
from qforge_runner.timestamps import utcnow

# A dedup claim naming a job folder that has not appeared yet: its submitter is still
# writing it; wait up to CLAIM_WAIT_SECONDS (by this process's clock), then judge it dead.
# What submit_batch takes: (spec, input.xyz text), (spec, input.xyz text, topology.json
# text or None) or (spec, input.xyz text, topology.json text or None, molecule key or
# None); the topology, when there is one, is kept beside input.xyz, the key in the record.
SubmitItem = (tuple[JobSpec, str] | tuple[JobSpec, str, str | None]
              | tuple[JobSpec, str, str | None, str | None])
CLAIM_WAIT_SECONDS = 30.0
CLAIM_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Submitted:
    """One item of a batch submission."""

    record: JobRecord  # the new job, or the existing job it duplicates
    duplicate_of: str | None  # the existing job's id when deduplicated, else None


def follow_up_hash(spec: JobSpec, depends_on: tuple[str, ...]) -> str:
    """A follow-up's dedup key: its parents and its step (its own input, a placeholder
    until it is released, is part of the step's options only)."""
    text = "follow-up\0" + ",".join(sorted(depends_on)) + "\0" + input_hash(spec)
    return hashlib.sha256(text.encode()).hexdigest()


def check_owner(owner: str) -> None:
    """Refuse an owner a record cannot hold before anything of a submission is written."""
    if not isinstance(owner, str) or not 0 < len(owner) <= MAX_OWNER_LENGTH:
        raise StoreError(f"invalid owner {owner!r}: 1 to {MAX_OWNER_LENGTH} characters")


class Submission:
    def __init__(self, layout: Layout, records: Records, dedup: DedupIndex,
                 groups: Groups, waiting: WaitingIndex) -> None:
        self._waiting = waiting
        self.layout = layout
        self._records = records
        self._dedup = dedup
        self._groups = groups

    def submit(self, spec: JobSpec, *, input_text: str, job_id: str | None = None,
               group: str | None = None, owner: str = UNKNOWN_OWNER,
               topology: str | None = None) -> JobRecord:
        """Create one QUEUED job (JobStore.submit says more)."""
        check_owner(owner)
        self._records.ensure()
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
        """Create one job per (spec, input xyz text[, topology.json text or None])
        (JobStore.submit_batch says more)."""
        validate_group(group)
        check_owner(owner)
        self._records.ensure()
        self.layout.group(group).mkdir(exist_ok=True)
        out: list[Submitted] = []
        for n, (spec, text, *rest) in enumerate(items, start=1):
            out.append(self._submit_one(spec, text, group=group, force=force, owner=owner,
                                        topology=rest[0] if rest else None,
                                        molecule=rest[1] if len(rest) > 1 else None))
            if on_progress is not None:
                on_progress(n)
        return out

    def submit_follow_up(self, spec: JobSpec, input_text: str, *, depends_on: tuple[str, ...],
                         molecule: str | None, group: str, owner: str,
                         topology: str | None = None) -> Submitted:
        """Create a job that waits for `depends_on` (a follow-up step, docs/ensembles.md):
        QUEUED, but in the waiting index rather than the queue until its parents end.
        Its dedup key is its parents and its step (its input is not known yet): the same
        step on the same parents is one job; it never merges with an unrelated job."""
        check_owner(owner)
        validate_group(group)
        if not depends_on:
            raise StoreError("a follow-up needs the jobs it depends on")
        self._records.ensure()
        self.layout.group(group).mkdir(exist_ok=True)
        digest = follow_up_hash(spec, depends_on)
        return self._submit_one(spec, input_text, group=group, force=False, owner=owner,
                                topology=topology, digest=digest,
                                after=(tuple(depends_on), molecule))

    def _submit_one(self, spec: JobSpec, input_text: str, *, group: str | None,
                    force: bool, job_id: str | None = None,
                    owner: str = UNKNOWN_OWNER, topology: str | None = None,
                    digest: str | None = None, molecule: str | None = None,
                    after: tuple[tuple[str, ...], str | None] | None = None) -> Submitted:
        digest = digest or input_hash(spec)
        waited = 0.0
        while True:
            gen, holder = self._dedup.holder(digest)
            state = "free" if holder is None else self._dedup.holder_state(holder, digest, gen)
            if state == "pending" and waited < CLAIM_WAIT_SECONDS:
                time.sleep(CLAIM_POLL_SECONDS)  # its submitter is writing it right now
                waited += CLAIM_POLL_SECONDS
                continue
            if state == "live" and not force and holder is not None:
                existing = self._records.read(holder)
                if group is not None:
                    self._groups.join(existing, group)
                return Submitted(existing, holder)
            # free, dead (FAILED, CANCELLED, gone) or forced past a live one
            take = None if state == "live" else gen + 1
            created = self._create(spec, input_text, group=group, digest=digest,
                                   claim_gen=take, job_id=job_id, owner=owner,
                                   topology=topology, molecule=molecule, after=after)
            if created is not None:
                return Submitted(created, None)
            waited = 0.0  # another submitter took that generation first: look again

    def _create(self, spec: JobSpec, input_text: str, *, group: str | None, digest: str,
                claim_gen: int | None, job_id: str | None,
                owner: str = UNKNOWN_OWNER, topology: str | None = None,
                molecule: str | None = None,
                after: tuple[tuple[str, ...], str | None] | None = None) -> JobRecord | None:
        """Write a new QUEUED job; None when the dedup claim `claim_gen` was taken by
        another submitter first (nothing is left behind then). With `after` (the ids it
        depends on, its molecule key), a waiting job: waiting markers, no queue marker."""
        # Paths as strings: a batch of 100,000 builds ten paths per job, and pathlib's
        # objects cost more than the system calls they name.
        root, index = os.fspath(self.layout.root), os.fspath(self.layout.index)
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
                           input_hash=digest, owner=owner, molecule=molecule)
        if after is not None:
            record = record.evolve(depends_on=after[0], molecule=after[1] or molecule,
                                   updated_at=now, waiting_reason=waiting_reason(after[0]))
        staging = f"{index}/incoming/{jid}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            os.mkdir(staging)
        except FileNotFoundError:
            os.makedirs(staging)
        markers: list[str] = []
        try:
            write_durable(f"{staging}/input.xyz", input_text.encode())
            if topology is not None:
                write_durable(f"{staging}/{TOPOLOGY_FILE}", topology.encode())
            write_durable(f"{staging}/metadata.json", serialize(record))
            fsync_dir(staging)
            if claim_gen is not None and not self._dedup.take(jid, digest, claim_gen):
                return None
            if group is not None:
                markers.append(f"{index}/groups/{group}/{jid}")
            if after is None:
                markers.append(
                    f"{index}/queue/{QueueKey.make(spec.priority, record.created_ns, jid).name}")
            else:
                markers += self._waiting.edge_paths(record)
            for marker in markers:
                if after is None:
                    touch(marker)
                else:  # an edge's folder may not exist yet
                    touch_in(Path(marker).parent, Path(marker).name)
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
        if after is not None:  # a parent that ended before the edge was made: signalled
            for parent in after[0]:
                data = self._records.peek(parent)
                if data is None or data.get("status") in DONE_STATUSES:
                    self._waiting.signal(parent)
        return record
