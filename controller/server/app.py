"""The ASGI app: routes under /api/v1/, /healthz and /readyz, errors as RFC 9457
problem+json with the command line's one-line messages (and its exit code, as the
extension member `exit_code`)."""


import asyncio
import contextlib
import json
import logging
import queue
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from qforge.auth.roles import Identity
from qforge.auth.tokens import TokenStore
from qforge.inputs import BadRecord, ReadMolecule
from qforge.record import Status
from qforge.server import wire
from qforge.server.hub import ProgressHub
from qforge.server.metrics import ServerMetrics
from qforge.server.security import PROXY_USER_HEADER, Authenticator, RateLimiter
from qforge.service.manager import JobManager
from qforge.service.models import (
    CancelResult,
    Deleted,
    JobView,
    Overview,
    Progress,
    ResultView,
    SubmitResult,
)
from qforge.service.overview import STATUS_TTL, OverviewCache
from qforge.service.problems import (
    USER_ERRORS,
    InvalidMolecules,
    Problem,
    TooLarge,
    UsageError,
    problem_of,
)
from qforge.settings import Settings
from qforge.store.jobstore import JobStore

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
GroupQ = Annotated[str | None, Query(max_length=200)]
IdsQ = Annotated[list[str] | None, Query(max_length=10_000)]
API = "/api/v1"
MAX_JSON_BODY = 1024 * 1024  # any body but a submission's
MAX_LINE = 64 * 1024 * 1024  # one molecule's line in a submission


def problem_response(problem: Problem, *, instance: str,
                     extra: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://qforge.dev/problems/{problem.kind}",
                            "title": problem.title, "status": problem.status,
                            "detail": problem.detail, "instance": instance,
                            "exit_code": problem.exit_code}
    body.update(extra or {})
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM,
                        headers=headers)


class Options:
    def __init__(self, *, trust_proxy_header: bool = False,
                 progress_interval: float = 0.5, status_ttl: float = STATUS_TTL) -> None:
        self.trust_proxy_header = trust_proxy_header
        self.progress_interval = progress_interval
        self.status_ttl = status_ttl  # seconds a status overview is shared by readers


def create_app(settings: Settings, options: Options | None = None) -> FastAPI:
    options = options or Options()
    store = JobStore(settings.jobs_dir)
    tokens = TokenStore(settings.jobs_dir)
    auth = Authenticator(tokens, trust_proxy_header=options.trust_proxy_header)
    limiter = RateLimiter(settings.api_rate_limit, settings.api_rate_burst)
    hub = ProgressHub(options.progress_interval)
    overviews = OverviewCache(options.status_ttl)
    metrics = ServerMetrics()
    app = FastAPI(title="qforge", version="1", openapi_url=f"{API}/openapi.json",
                  docs_url=f"{API}/docs", redoc_url=None,
                  description="xtb calculations as jobs: the front door (docs/server.md). "
                              "Every route but /healthz and /readyz needs "
                              "'Authorization: Bearer <token>'.")
    app.state.metrics = metrics

    # ------------------------------------------------------------ errors
    async def _any(request: Request, exc: Exception) -> Response:
        problem = problem_of(exc)
        if problem is None:
            log.error("Request %s %s failed: %s: %s", request.method, request.url.path,
                      type(exc).__name__, exc, exc_info=exc)
            problem = Problem(500, 4, "internal", "Internal error",
                              f"internal error: {type(exc).__name__}")
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, InvalidMolecules):
            extra["errors"] = exc.lines[:1000]
        retry = getattr(exc, "retry_after", None)
        if isinstance(retry, float):
            headers["Retry-After"] = str(max(1, round(retry)))
        if problem.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return problem_response(problem, instance=request.url.path, extra=extra,
                                headers=headers)

    # What a user can cause is answered by its problem (ExceptionMiddleware); anything else
    # is a bug: logged with its traceback, answered 500 with no detail of the inside.
    for kind in (*USER_ERRORS, Exception):
        app.add_exception_handler(kind, _any)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else str(
            first.get("msg", "invalid request"))
        return problem_response(Problem(400, 2, "invalid-input", "Invalid input", detail),
                                instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        detail = ("no such route" if exc.status_code == 404
                  else str(exc.detail or "request refused"))
        return problem_response(Problem(exc.status_code, 2, kind, str(exc.detail), detail),
                                instance=request.url.path)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.observe(request.method, path, response.status_code,
                        time.perf_counter() - start)
        return response

    # ---------------------------------------------------------- identity
    def identity(authorization: Annotated[str | None, Header()] = None,
                 x_auth_request_user: Annotated[str | None, Header(
                     alias=PROXY_USER_HEADER, include_in_schema=False)] = None) -> Identity:
        who = auth.identify(authorization, x_auth_request_user)
        limiter.take(who.name)
        return who

    Who = Annotated[Identity, Depends(identity)]

    def manager(who: Identity) -> JobManager:
        return JobManager(store, who, settings, overviews=overviews)

    # ------------------------------------------------------------ health
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        ok = settings.jobs_dir.is_dir()
        return JSONResponse({"status": "ok" if ok else "store unreadable"},
                            status_code=200 if ok else 503)

    # ------------------------------------------------------------- reads
    @app.get(f"{API}/whoami", tags=["auth"])
    def whoami(who: Who) -> dict[str, str]:
        return {"name": who.name, "role": who.role.value}

    @app.get(f"{API}/jobs", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "one record (metadata.json) a line"}})
    def list_jobs(who: Who, status: Status | None = None,
                  group: GroupQ = None) -> Response:
        records = manager(who).records(status, group)
        lines = (json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return StreamingResponse(_chunks(lines), media_type="application/x-ndjson",
                                 headers={"X-Qforge-Count": str(len(records))})

    @app.get(f"{API}/jobs/{{job_id}}", tags=["jobs"])
    def show(who: Who, job_id: str) -> JobView:
        return manager(who).show(job_id)

    @app.get(f"{API}/jobs/{{job_id}}/result", tags=["jobs"])
    def result(who: Who, job_id: str,
               format: Literal["json", "xyz", "qcschema"] = "json") -> ResultView:
        return manager(who).result(job_id, format)

    @app.get(f"{API}/status", tags=["groups"])
    def store_status(who: Who) -> dict[str, Any]:
        return manager(who).overview(None).as_json()

    @app.get(f"{API}/groups/{{group}}", tags=["groups"])
    def group_status(who: Who, group: str) -> dict[str, Any]:
        return manager(who).overview(group).as_json()

    @app.get(f"{API}/export", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/plain": {}},
                              "description": "the export, streamed"}})
    def export(who: Who, format: Literal["csv", "jsonl", "sdf", "xyz"],
               status: Status | None = None,
               group: GroupQ = None) -> Response:
        n, pieces = manager(who).export(format, status, group)
        media = {"csv": "text/csv", "jsonl": "application/x-ndjson"}.get(format, "text/plain")
        return StreamingResponse(_chunks(pieces), media_type=f"{media}; charset=utf-8",
                                 headers={"X-Qforge-Count": str(n)})

    @app.get(f"{API}/progress", tags=["groups"])
    def progress(who: Who, group: GroupQ = None,
                 job_id: IdsQ = None) -> Progress:
        return manager(who).progress(job_id or [], group)

    @app.get(f"{API}/events", tags=["groups"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "a Progress (JSON) per event, until all are "
                                             "done"}})
    async def events(who: Who, group: GroupQ = None,
                     job_id: IdsQ = None) -> Response:
        mgr = manager(who)
        ids = job_id or []
        await run_in_threadpool(mgr.progress, ids, group)  # 404 / 400 before streaming
        key = (group, tuple(sorted(set(ids))))

        async def stream() -> AsyncIterator[str]:
            async for snap in hub.follow(key, lambda: mgr.watch(ids, group)):
                if snap is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"event: progress\ndata: {snap.model_dump_json()}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ writes
    @app.post(f"{API}/jobs", tags=["jobs"], status_code=201, response_model=SubmitResult,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def submit(request: Request, who: Who) -> Response:
        limit = settings.max_input_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise TooLarge(f"the submission is {int(length)} bytes: more than "
                           f"MAX_INPUT_BYTES={limit}")
        # The lines are validated as they arrive, by a thread (the service layer's first
        # pass keeps each molecule compactly): memory stays bounded by the batches in
        # flight, not by the upload.
        feed: queue.Queue[list[bytes] | BaseException | None] = queue.Queue(maxsize=16)
        mgr = manager(who)
        task = asyncio.ensure_future(run_in_threadpool(
            _submit, mgr, _drain(feed), settings.max_atoms))
        lines = _LineFeed(limit)
        try:
            async for chunk in request.stream():
                if task.done():
                    break
                lines.feed(chunk)
                if lines.lines:
                    batch, lines.lines = lines.lines, []
                    await run_in_threadpool(feed.put, batch)
            lines.close()
            if lines.lines:
                await run_in_threadpool(feed.put, lines.lines)
            await run_in_threadpool(feed.put, None)
        except BaseException as exc:
            with contextlib.suppress(queue.Full):
                feed.put_nowait(exc)
            with contextlib.suppress(BaseException):
                await task
            if isinstance(exc, ClientDisconnect):
                log.warning("A submission by %s was cut off mid-upload; nothing of it was "
                            "written", who.name)
                raise UsageError("the upload was cut off; nothing was written") from None
            raise
        result = await task
        # Serialised by the model itself: FastAPI's way (a dict per job, validated again,
        # then json.dumps) held ~50 MB more at the peak for 100,000 jobs.
        return Response(result.model_dump_json(), status_code=201,
                        media_type="application/json")

    @app.post(f"{API}/cancel", tags=["jobs"])
    def cancel(who: Who, body: CancelBody) -> CancelResult:
        return manager(who).cancel(body.job_ids, body.group)

    @app.post(f"{API}/delete", tags=["jobs"])
    def delete(who: Who, body: DeleteBody) -> Deleted:
        return manager(who).delete(body.job_ids)

    @app.delete(f"{API}/jobs/{{job_id}}", tags=["jobs"])
    def delete_one(who: Who, job_id: str) -> Deleted:
        return manager(who).delete([job_id])

    return app


from pydantic import BaseModel, ConfigDict, Field  # noqa: E402


class CancelBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[str] = Field(default_factory=list, max_length=100_000)
    group: str | None = Field(None, max_length=200)


class DeleteBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[str] = Field(min_length=1, max_length=100_000)


class _LineFeed:
    """The body's lines as they stream in, bounded by the submission limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.rest = b""
        self.lines: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"the submission is more than MAX_INPUT_BYTES={self.limit} bytes")
        data = self.rest + chunk
        *whole, self.rest = data.split(b"\n")
        self.lines.extend(line for line in whole if line.strip())
        if len(self.rest) > MAX_LINE:
            raise TooLarge("a line of the submission is longer than 64 MiB")

    def close(self) -> None:
        if self.rest.strip():
            self.lines.append(self.rest)
        self.rest = b""


class _Aborted(Exception):
    pass


def _drain(feed: queue.Queue[list[bytes] | BaseException | None]) -> Iterator[bytes]:
    while True:
        batch = feed.get()
        if batch is None:
            return
        if isinstance(batch, BaseException):
            raise _Aborted("the upload ended early") from batch
        yield from batch


def _submit(mgr: JobManager, lines: Iterator[bytes], max_atoms: int) -> SubmitResult:
    first = next(lines, None)
    if first is None:
        raise UsageError("an empty submission: the first line must be {\"options\": {...}}")
    options = wire.decode_options(first)
    count = 0

    def items() -> Iterator[ReadMolecule | BadRecord]:
        nonlocal count
        for n, line in enumerate(lines, 2):
            count += 1
            yield wire.decode_molecule(line, n, max_atoms)

    try:
        return mgr.submit(items(), options)
    except UsageError:
        if count == 0:
            raise UsageError("no molecule in the submission; nothing was submitted") from None
        raise


def _chunks(pieces: Iterator[str], size: int = 65536) -> Iterator[bytes]:
    buf: list[str] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= size:
            yield "".join(buf).encode()
            buf, n = [], 0
    if buf:
        yield "".join(buf).encode()


__all__ = ["Options", "Overview", "create_app"]
