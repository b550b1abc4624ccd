"""Changes to jobs that exist: cancel, retry, delete."""

from typing import Annotated

from fastapi import APIRouter, Depends

from qforge.auth.roles import Identity
from qforge.server.routes import Context
from qforge.server.routes.shapes import (
    API,
    CancelGroup,
    CancelJobs,
    DeleteBody,
    JobId,
    RetryGroup,
    RetryJobs,
)
from qforge.service.models import CancelResult, Deleted, RetryResult


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    manager = ctx.manager
    Who = Annotated[Identity, Depends(ctx.identity)]

    @api.post(f"{API}/cancel", tags=["jobs"])
    def cancel(who: Who, body: CancelJobs | CancelGroup) -> CancelResult:
        if isinstance(body, CancelGroup):
            return manager(who).cancel([], body.group)
        return manager(who).cancel(body.job_ids, None)

    @api.post(f"{API}/retry", tags=["jobs"])
    def retry(who: Who, body: RetryJobs | RetryGroup) -> RetryResult:
        """FAILED (and CANCELLED, with include_cancelled) jobs run again as a new
        attempt each (docs/retry.md); every id is checked before any is retried."""
        ids, group = ([], body.group) if isinstance(body, RetryGroup) else (body.job_ids, None)
        return manager(who).retry(ids, group, error_type=body.error_type,
                                  include_cancelled=body.include_cancelled)

    @api.post(f"{API}/delete", tags=["jobs"])
    def delete(who: Who, body: DeleteBody) -> Deleted:
        return manager(who).delete(body.job_ids)

    @api.delete(f"{API}/jobs/{{job_id}}", tags=["jobs"])
    def delete_one(who: Who, job_id: JobId) -> Deleted:
        return manager(who).delete([job_id])

    return api
