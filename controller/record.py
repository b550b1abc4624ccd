"""The job record kept in `$JOBS_DIR/<job_id>/metadata.json` — the single source of truth."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qforge.spec import JobSpec
from qforge_runner.result import JobError
from qforge_runner.summary import ResultSummary
from qforge_runner.timestamps import utcnow

SCHEMA_VERSION = 1
# The owner of a record written before owners existed (and the default of JobStore.submit).
UNKNOWN_OWNER = "unknown"
MAX_OWNER_LENGTH = 256


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class Placement(BaseModel):
    """Where a job runs or ran."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    executor: Literal["local", "kubernetes"]
    worker_id: str | None = None
    instance: str | None = None
    host: str | None = None
    k8s_job: str | None = None
    pod: str | None = None
    node: str | None = None


class Attempt(BaseModel):
    """One earlier run of a job, kept in its record's `history` when the job runs again
    (`qforge retry`, or the retry ladder: docs/retry.md). The current run is the record
    itself; its number is `len(history) + 1`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    status: Status  # how it ended: FAILED, CANCELLED (or COMPLETED at a saddle point)
    started_at: str | None = None
    finished_at: str | None = None
    error: JobError | None = None
    # What the next attempt changed, in words ("run again as it was", "electronic
    # temperature 3000 K", ...), and the ladder's rung that did it (None: a person's retry)
    change: str
    rung: str | None = None
    # Who asked: "ladder" (automatic) or the name of the user who ran `qforge retry`.
    by: str = Field(min_length=1, max_length=MAX_OWNER_LENGTH)
    # Where its result.json and xtb's files were kept, relative to the job's folder.
    files: str | None = None
    # The record's `attempts` (claims, counted over the job's life) when it ended.
    claims: int = Field(0, ge=0)


class JobRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    job_id: str
    status: Status
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    # Nanosecond submit stamp: orders jobs FIFO within one priority.
    created_ns: int
    spec: JobSpec
    # The result summary (JobResult.summary()); a record written by an older release
    # reads and is written back as it was (qforge_runner.summary).
    result: ResultSummary | None = None
    error: JobError | None = None
    placement: Placement | None = None
    attempts: int = Field(0, ge=0)
    # Why a job is not running yet (the Kubernetes executor fills this in).
    waiting_reason: str | None = None
    # The group (campaign) it was submitted in. Duplicates submitted later in other
    # groups join those too: see controller/store/groups.py (never this record).
    group: str | None = None
    # sha256 of the canonical input (controller/store/dedup.py), for deduplication.
    input_hash: str | None = None
    # Who submitted it: the token's name through the server, the OS user locally
    # (qforge.auth). A record written before owners existed reads as "unknown".
    owner: str = Field(UNKNOWN_OWNER, min_length=1, max_length=MAX_OWNER_LENGTH)
    # The molecule it computes (docs/ensembles.md): the conformers of one molecule, and
    # the follow-up steps on them, share this key. None for a record written before
    # ensembles existed, which is a molecule of its own.
    # Neither is written when unset, so older records are written back byte for byte.
    molecule: str | None = Field(None, min_length=1, max_length=MAX_OWNER_LENGTH,
                                 exclude_if=lambda m: m is None)
    # The jobs it waits for (a follow-up step): it is not queued for the cap until they
    # are done; one of them FAILED or CANCELLED ends it as CANCELLED (docs/ensembles.md).
    depends_on: tuple[str, ...] = Field((), exclude_if=lambda d: not d)
    # The job's earlier runs, oldest first (docs/retry.md); not written while it has
    # none, so older records are written back byte for byte.
    history: tuple[Attempt, ...] = Field((), exclude_if=lambda h: not h)

    @property
    def attempt(self) -> int:
        """The number of the current run: 1, then 2 after a retry, ..."""
        return len(self.history) + 1

    @property
    def claims_this_attempt(self) -> int:
        """How often the current attempt was claimed (`attempts` counts over all of
        them, so that each claim has a name of its own in the cluster)."""
        return self.attempts - (self.history[-1].claims if self.history else 0)

    def evolve(self, **changes: Any) -> JobRecord:
        """A copy with changes applied and `updated_at` bumped (the model is frozen).

        The whole record is validated again, so an unknown field or a bad value in
        `changes` is refused as before; but the unchanged fields are handed over as the
        validated objects they are, not dumped to plain data first, so the spec (and its
        molecule: O(atoms) checks) is not validated again (`JobSpec._chemistry`)."""
        changes.setdefault("updated_at", utcnow())
        data = {name: getattr(self, name) for name in _FIELDS}
        data.update(changes)
        return JobRecord.model_validate(data)

    def cancelled_by_user(self, *, started: bool) -> JobRecord:
        """The record of a cancel a user asked for (`qforge cancel`): CANCELLED, now,
        saying whether it had started. Every path that honours a cancel request writes
        this."""
        message = "cancelled by user" if started else "cancelled by user before it started"
        return self.evolve(status=Status.CANCELLED, finished_at=utcnow(),
                           error=JobError(type="cancelled", message=message))


_FIELDS: tuple[str, ...] = tuple(JobRecord.model_fields)
