"""Progress: a snapshot of a set of jobs or a group, or a stream of them (server-sent
events), one poll of the store per followed set whoever follows it (hub.py)."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from qforge.auth.roles import Identity
from qforge.server.routes import Context
from qforge.server.routes.shapes import API, Group, IdsQ
from qforge.service.manager import JobManager
from qforge.service.models import Progress

EVENTS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}},
                "description": "a Progress (JSON) per event, until all are done"}}


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    manager, hub = ctx.manager, ctx.hub
    Who = Annotated[Identity, Depends(ctx.identity)]

    @api.get(f"{API}/progress", tags=["jobs"])
    def progress(who: Who, job_id: IdsQ) -> Progress:
        return manager(who).progress(job_id, None)

    @api.get(f"{API}/groups/{{group}}/progress", tags=["groups"])
    def group_progress(who: Who, group: Group) -> Progress:
        return manager(who).progress([], group)

    @api.get(f"{API}/events", tags=["jobs"], response_class=StreamingResponse,
             responses=EVENTS)
    async def events(who: Who, job_id: IdsQ) -> Response:
        return await _events(manager(who), sorted(set(job_id)), None)

    @api.get(f"{API}/groups/{{group}}/events", tags=["groups"],
             response_class=StreamingResponse, responses=EVENTS)
    async def group_events(who: Who, group: Group) -> Response:
        return await _events(manager(who), [], group)

    async def _events(mgr: JobManager, ids: list[str], group: str | None) -> Response:
        await run_in_threadpool(mgr.progress, ids, group)  # 404 / 400 before streaming

        async def stream() -> AsyncIterator[str]:
            async for snap in hub.follow((group, tuple(ids)), lambda: mgr.watch(ids, group)):
                if snap is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"event: progress\ndata: {snap.model_dump_json()}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return api
