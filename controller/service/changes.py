"""`qforge cancel` and `qforge delete` (retry is retry.py): every permission checked
before anything is written."""

from __future__ import annotations

from qforge.auth.roles import Identity, can_change, require_change, require_submit
from qforge.ids import validate_job_id
from qforge.record import JobRecord, Status
from qforge.service.lookup import known_group
from qforge.service.models import CancelResult, Deleted
from qforge.service.problems import UsageError
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore


def cancel(store: JobStore, identity: Identity, job_ids: list[str],
           group: str | None) -> CancelResult:
    if bool(job_ids) == (group is not None):
        raise UsageError("cancel: give job ids or --group, not both (nor neither)")
    require_submit(identity)
    if group is not None:
        return cancel_group(store, identity, known_group(store, group))
    ids = list(dict.fromkeys(job_ids))
    records: list[JobRecord] = []
    missing: list[str] = []
    for job_id in ids:  # every permission checked before any request is left
        try:
            record = store.read(job_id)
        except JobNotFound:
            missing.append(job_id)
            continue
        require_change(identity, "cancel", record.job_id, record.owner)
        records.append(record)
    out_req: list[tuple[str, Status]] = []
    out_done: list[tuple[str, Status]] = []
    for record in records:
        after = store.cancels.request(record.job_id)
        (out_done if after.status.terminal else out_req).append((after.job_id, after.status))
    return CancelResult(requested=out_req, already=out_done, missing=missing)


def cancel_group(store: JobStore, identity: Identity, group: str) -> CancelResult:
    """The group's unfinished jobs the caller may change; a job another campaign counts
    on is kept (cancelled by its id only)."""
    requested: list[tuple[str, Status]] = []
    already: list[tuple[str, Status]] = []
    shared = 0
    warnings: list[str] = []
    for job_id, (st, _) in store.groups.states(group).items():
        if st.terminal:
            already.append((job_id, st))
            continue
        try:
            record = store.read(job_id)
            if set(store.groups.of(record)) - {group}:
                shared += 1  # another campaign counts on it: cancel it by its id
                continue
            if not can_change(identity, record.owner):
                warnings.append(f"job {job_id} belongs to {record.owner}: kept")
                continue
            store.cancels.request(job_id)
            requested.append((job_id, st))
        except (JobNotFound, CorruptRecord) as exc:
            warnings.append(str(exc))
    return CancelResult(group=group, requested=requested, already=already,
                        shared=shared, warnings=warnings)


def delete(store: JobStore, identity: Identity, job_ids: list[str]) -> Deleted:
    """All or nothing: every id is checked (a bad one ends the command with its one
    line, nothing deleted), then each job is removed."""
    require_submit(identity)
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        raise UsageError("delete: give at least one job id")
    for job_id in ids:
        validate_job_id(job_id)  # a malformed id is bad input (exit 2), not a lookup
        record = store.deletable(job_id)
        require_change(identity, "delete", record.job_id, record.owner)
    out = []
    for job_id in ids:
        record = store.delete(job_id)
        out.append((record.job_id, record.status))
    return Deleted(jobs=out)
