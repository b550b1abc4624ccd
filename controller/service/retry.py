"""`qforge retry`: FAILED (and, when asked, CANCELLED) jobs run again, each as a new
attempt of the same job (docs/retry.md). Every id is checked before anything is written:
an unknown id, or a job the caller may not change, ends the request with its one line
and nothing retried. A job that is not FAILED or CANCELLED is skipped with the reason;
nothing else changes."""

from __future__ import annotations

from qforge.auth.roles import Identity, can_change, require_change, require_submit
from qforge.ids import validate_job_id
from qforge.record import JobRecord, Status
from qforge.service.models import RetryResult
from qforge.service.problems import UsageError
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore, validate_group
from qforge_runner.result import ErrorType

AS_IT_WAS = "run again as it was"


def parse_error_type(value: str | None) -> ErrorType | None:
    if value is None:
        return None
    try:
        return ErrorType(value)
    except ValueError:
        raise UsageError(f"unknown error type {value!r}: one of "
                         f"{', '.join(t.value for t in ErrorType)}") from None


def why_not(record: JobRecord, error_type: ErrorType | None,
            include_cancelled: bool) -> str | None:
    """Why `record` is not retried (None: it is). Pure."""
    st = record.status
    if st is Status.CANCELLED and not include_cancelled:
        return "CANCELLED (--include-cancelled retries it)"
    if st not in (Status.FAILED, Status.CANCELLED):
        return f"{st.value}: only FAILED and CANCELLED jobs are retried"
    if error_type is not None and (record.error is None or record.error.type != error_type):
        have = record.error.type.value if record.error else "no error"
        return f"failed with {have}, not {error_type.value}"
    return None


def retry_jobs(store: JobStore, identity: Identity, job_ids: list[str], group: str | None,
               *, error_type: str | None = None,
               include_cancelled: bool = False) -> RetryResult:
    if bool(job_ids) == (group is not None):
        raise UsageError("retry: give job ids or --group, not both (nor neither)")
    require_submit(identity)
    wanted = parse_error_type(error_type)
    skipped: list[tuple[str, str]] = []
    if group is not None:
        group = validate_group(group)
        if not store.groups.exists(group):
            raise JobNotFound(f"no such group: {group}")
        retryable = {Status.FAILED, Status.CANCELLED} if include_cancelled else {Status.FAILED}
        records: list[JobRecord] = []
        for job_id, (st, _) in sorted(store.groups.states(group).items()):
            if st not in retryable:
                continue
            try:
                record = store.read(job_id)
            except (JobNotFound, CorruptRecord) as exc:
                skipped.append((job_id, str(exc)))
                continue
            if not can_change(identity, record.owner):
                skipped.append((job_id, f"belongs to {record.owner}"))
                continue
            records.append(record)
    else:
        ids = list(dict.fromkeys(job_ids))
        for job_id in ids:
            validate_job_id(job_id)  # a malformed id is bad input, not a lookup
        records = [store.read(job_id) for job_id in ids]  # an unknown id: nothing changes
        for record in records:
            require_change(identity, "retry", record.job_id, record.owner)
    retried: list[tuple[str, int]] = []
    for record in records:
        reason = why_not(record, wanted, include_cancelled)
        if reason is not None:
            skipped.append((record.job_id, reason))
            continue
        queued = store.retries.again(record, by=identity.name, change=AS_IT_WAS)
        if queued is None:
            skipped.append((record.job_id, "changed meanwhile (retried by someone else?)"))
        else:
            retried.append((queued.job_id, queued.attempt))
    return RetryResult(group=group, retried=retried, skipped=skipped)
