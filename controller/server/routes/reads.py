"""Reads: health, who the caller is, jobs (listed, shown, their results, exported) and
the status of the store and of a group."""

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response, StreamingResponse

from qforge.auth.roles import Identity
from qforge.record import Status
from qforge.server.routes import Context, chunks
from qforge.server.routes.shapes import API, Group, GroupQ, JobId
from qforge.service.models import JobView, ResultView


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    settings, manager = ctx.settings, ctx.manager
    Who = Annotated[Identity, Depends(ctx.identity)]

    @api.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"])
    def readyz() -> Response:
        ok = settings.jobs_dir.is_dir()
        return JSONResponse({"status": "ok" if ok else "store unreadable"},
                            status_code=200 if ok else 503)

    @api.get(f"{API}/whoami", tags=["auth"])
    def whoami(who: Who) -> dict[str, str]:
        return {"name": who.name, "role": who.role.value}

    @api.get(f"{API}/jobs", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "one record (metadata.json) a line"}})
    def list_jobs(who: Who, status: Status | None = None,
                  group: GroupQ = None) -> Response:
        records = manager(who).records(status, group)
        lines = (json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return StreamingResponse(chunks(lines), media_type="application/x-ndjson",
                                 headers={"X-Qforge-Count": str(len(records))})

    @api.get(f"{API}/jobs/{{job_id}}", tags=["jobs"])
    def show(who: Who, job_id: JobId) -> JobView:
        return manager(who).show(job_id)

    @api.get(f"{API}/jobs/{{job_id}}/result", tags=["jobs"])
    def result(who: Who, job_id: JobId,
               format: Literal["json", "xyz", "qcschema"] = "json") -> ResultView:
        return manager(who).result(job_id, format)

    @api.get(f"{API}/status", tags=["groups"])
    def store_status(who: Who, owners: bool = False) -> dict[str, Any]:
        return manager(who).overview(None, owners=owners).as_json()

    @api.get(f"{API}/groups/{{group}}", tags=["groups"])
    def group_status(who: Who, group: Group) -> dict[str, Any]:
        return manager(who).overview(group).as_json()

    @api.get(f"{API}/export", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {},
                                          "text/plain": {}},
                              "description": "the export, streamed: CSV, JSON lines, "
                                             "or SDF and XYZ as text"}})
    def export(who: Who, format: Literal["csv", "jsonl", "sdf", "xyz"],
               status: Status | None = None,
               group: GroupQ = None, per_molecule: bool = False) -> Response:
        n, pieces = manager(who).export(format, status, group, per_molecule=per_molecule)
        media = {"csv": "text/csv", "jsonl": "application/x-ndjson"}.get(format, "text/plain")
        return StreamingResponse(chunks(pieces), media_type=f"{media}; charset=utf-8",
                                 headers={"X-Qforge-Count": str(n)})

    return api
