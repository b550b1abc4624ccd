"""The ASGI app: routes under /api/v1/, /healthz and /readyz, errors as RFC 9457
problem+json with the command line's one-line messages (and its exit code, as the
extension member `exit_code`)."""


import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from qforge.auth.roles import Identity
from qforge.auth.tokens import TokenStore
from qforge.ids import InvalidJobId, validate_job_id
from qforge.inputs import BadRecord, ReadMolecule
from qforge.record import Status
from qforge.service import wire
from qforge.server.hub import ProgressHub
from qforge.server.limits import BodyLimit
from qforge.server.metrics import ServerMetrics
from qforge.server.security import PROXY_USER_HEADER, Authenticator, RateLimiter
from qforge.server.sessions import COOKIE, CSRF_HEADER, Sessions, load_key
from qforge.service.manager import JobManager
from qforge.service.models import (
    CancelResult,
    Deleted,
    JobView,
    Overview,
    Progress,
    ResultView,
    RetryResult,
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
from qforge.service.table import Tables, warm
from qforge.settings import Settings
from qforge.store.groups import validate_group
from qforge.store.jobstore import JobStore
from qforge_runner.errors import InputError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
# The shapes of ids and group names (qforge.ids, qforge.store.groups), so that the
# description says what is accepted; a name of that shape that names nothing is a 404.
JOB_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# letters, digits, '-', '_' and '.', no '..', a letter or digit at each end; at most 63
GROUP = r"^[A-Za-z0-9](?:(?:[-_]|\.[-_])*\.?[A-Za-z0-9])*$"
GroupQ = Annotated[str | None, Query(pattern=GROUP, max_length=63)]
IdsQ = Annotated[list[Annotated[str, StringConstraints(pattern=JOB_ID)]],
                 Query(min_length=1, max_length=10_000)]
JobId = Annotated[str, Path(pattern=JOB_ID)]
Group = Annotated[str, Path(pattern=GROUP, max_length=63)]
API = "/api/v1"
MAX_JSON_BODY = 8 * 1024 * 1024  # any body but a submission's (100,000 ids fit)
MAX_LINE = 64 * 1024 * 1024  # one molecule's line in a submission


class ProblemDetails(BaseModel):
    """An error, as RFC 9457 has it, with the command line's exit code beside."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    exit_code: int
    errors: list[str] | None = None  # a refused submission: a line per bad molecule


_PROBLEM = {"model": ProblemDetails, "content": {PROBLEM: {}}}
# Every answer but a success is a problem; each route may answer any of these.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {**_PROBLEM, "description": what} for code, what in (
        (400, "bad request or parameter"), (401, "no token, or an unknown or revoked one"),
        (403, "the token's role or the job's owner does not allow it"),
        (404, "no such job, group or route"), (409, "not possible in the job's state"),
        (413, "the submission is too large"), (422, "invalid input"),
        (429, "too many requests for this token"), (503, "the store is unreadable"),
        (507, "the store is full or read-only"))}


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
                 progress_interval: float = 0.5, warm_tables: int = 0,
                 status_ttl: float = STATUS_TTL) -> None:
        self.trust_proxy_header = trust_proxy_header
        self.progress_interval = progress_interval
        # the page's tables of this many campaigns (changed last) read at start-up
        self.warm_tables = warm_tables
        self.status_ttl = status_ttl  # seconds a status overview is shared by readers


def create_app(settings: Settings, options: Options | None = None) -> FastAPI:
    options = options or Options()
    store = JobStore(settings.jobs_dir)
    tokens = TokenStore(settings.jobs_dir)
    auth = Authenticator(tokens, trust_proxy_header=options.trust_proxy_header)
    limiter = RateLimiter(settings.api_rate_limit, settings.api_rate_burst)
    hub = ProgressHub(options.progress_interval)
    sessions = Sessions(tokens, load_key(settings.jobs_dir))
    tables = Tables(store)
    if options.warm_tables:
        threading.Thread(target=warm, args=(tables, options.warm_tables), daemon=True,
                         name="qforge-page-warm").start()
    overviews = OverviewCache(options.status_ttl)
    metrics = ServerMetrics()
    app = FastAPI(title="qforge", version="1", openapi_url=f"{API}/openapi.json",
                  responses=PROBLEMS,
                  docs_url=f"{API}/docs", redoc_url=None,
                  description="xtb calculations as jobs: the front door (docs/server.md). "
                              "Every route but /healthz and /readyz needs "
                              "'Authorization: Bearer <token>'.")
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY,
                       exempt=frozenset({("POST", f"{API}/jobs")}))

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
        return problem_response(Problem(400, 2, "invalid-input", "Invalid input",
                                        _first_error(exc.errors())),
                                instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed",
                413: "too-large"}.get(exc.status_code, "http")
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
    def identity(request: Request,
                 authorization: Annotated[str | None, Header()] = None,
                 x_auth_request_user: Annotated[str | None, Header(
                     alias=PROXY_USER_HEADER, include_in_schema=False)] = None) -> Identity:
        # The page's session cookie stands in for a bearer token (qforge.server.sessions);
        # a change made with it needs the session's CSRF token and the server's origin.
        cookie = request.cookies.get(COOKIE)
        if authorization is None and cookie is not None and not (
                auth.trust_proxy_header and x_auth_request_user):
            session = sessions.read(cookie)
            if session is not None:
                sessions.check_write(session, request.method,
                                     request.headers.get(CSRF_HEADER),
                                     request.headers.get("origin"),
                                     request.headers.get("host"))
                limiter.take(session.identity.name)
                return session.identity
        who = auth.identify(authorization, x_auth_request_user)
        limiter.take(who.name)
        return who

    Who = Annotated[Identity, Depends(identity)]

    def manager(who: Identity) -> JobManager:
        return JobManager(store, who, settings, tables=tables, overviews=overviews)

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
    def show(who: Who, job_id: JobId) -> JobView:
        return manager(who).show(job_id)

    @app.get(f"{API}/jobs/{{job_id}}/result", tags=["jobs"])
    def result(who: Who, job_id: JobId,
               format: Literal["json", "xyz", "qcschema"] = "json") -> ResultView:
        return manager(who).result(job_id, format)

    @app.get(f"{API}/status", tags=["groups"])
    def store_status(who: Who, owners: bool = False) -> dict[str, Any]:
        return manager(who).overview(None, owners=owners).as_json()

    @app.get(f"{API}/groups/{{group}}", tags=["groups"])
    def group_status(who: Who, group: Group) -> dict[str, Any]:
        return manager(who).overview(group).as_json()

    @app.get(f"{API}/export", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {},
                                          "text/plain": {}},
                              "description": "the export, streamed: CSV, JSON lines, "
                                             "or SDF and XYZ as text"}})
    def export(who: Who, format: Literal["csv", "jsonl", "sdf", "xyz"],
               status: Status | None = None,
               group: GroupQ = None, per_molecule: bool = False) -> Response:
        n, pieces = manager(who).export(format, status, group, per_molecule=per_molecule)
        media = {"csv": "text/csv", "jsonl": "application/x-ndjson"}.get(format, "text/plain")
        return StreamingResponse(_chunks(pieces), media_type=f"{media}; charset=utf-8",
                                 headers={"X-Qforge-Count": str(n)})

    EVENTS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}},
                    "description": "a Progress (JSON) per event, until all are done"}}

    @app.get(f"{API}/progress", tags=["jobs"])
    def progress(who: Who, job_id: IdsQ) -> Progress:
        return manager(who).progress(job_id, None)

    @app.get(f"{API}/groups/{{group}}/progress", tags=["groups"])
    def group_progress(who: Who, group: Group) -> Progress:
        return manager(who).progress([], group)

    @app.get(f"{API}/events", tags=["jobs"], response_class=StreamingResponse,
             responses=EVENTS)
    async def events(who: Who, job_id: IdsQ) -> Response:
        return await _events(manager(who), sorted(set(job_id)), None)

    @app.get(f"{API}/groups/{{group}}/events", tags=["groups"],
             response_class=StreamingResponse, responses=EVENTS)
    async def group_events(who: Who, group: Group) -> Response:
        return await _events(manager(who), [], group)

    async def _events(mgr: JobManager, ids: list[str], group: str | None) -> Response:
        """One poll of the store per followed set, whoever follows it (hub.py)."""
        await run_in_threadpool(mgr.progress, ids, group)  # 404 / 400 before streaming

        async def stream() -> AsyncIterator[str]:
            async for snap in hub.follow((group, tuple(ids)), lambda: mgr.watch(ids, group)):
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
    def cancel(who: Who, body: CancelJobs | CancelGroup) -> CancelResult:
        if isinstance(body, CancelGroup):
            return manager(who).cancel([], body.group)
        return manager(who).cancel(body.job_ids, None)

    @app.post(f"{API}/retry", tags=["jobs"])
    def retry(who: Who, body: RetryJobs | RetryGroup) -> RetryResult:
        """FAILED (and CANCELLED, with include_cancelled) jobs run again as a new
        attempt each (docs/retry.md); every id is checked before any is retried."""
        ids, group = ([], body.group) if isinstance(body, RetryGroup) else (body.job_ids, None)
        return manager(who).retry(ids, group, error_type=body.error_type,
                                  include_cancelled=body.include_cancelled)

    @app.post(f"{API}/delete", tags=["jobs"])
    def delete(who: Who, body: DeleteBody) -> Deleted:
        return manager(who).delete(body.job_ids)

    @app.delete(f"{API}/jobs/{{job_id}}", tags=["jobs"])
    def delete_one(who: Who, job_id: JobId) -> Deleted:
        return manager(who).delete([job_id])

    from qforge.server import pages

    pages.install(app, pages.PageContext(
        sessions=sessions, limiter=limiter, identity=identity, manager=manager))
    return app




class CancelJobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)


RetryErrorType = Literal["input_error", "convergence_error", "timeout", "resource_error",
                         "xtb_error", "infrastructure_error", "cancelled"]


class RetryJobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)
    error_type: RetryErrorType | None = None
    include_cancelled: bool = False


class RetryGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: Annotated[str, StringConstraints(pattern=GROUP, max_length=63)]
    error_type: RetryErrorType | None = None
    include_cancelled: bool = False


class CancelGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: Annotated[str, StringConstraints(pattern=GROUP, max_length=63)]


class DeleteBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)


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


def _first_error(errors: Sequence[Any]) -> str:
    """The first of a request's validation errors as one line; a job id or a group in
    the words the command line uses for it."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
    value = first.get("input")
    name = loc[-1] if loc else ""
    if name in ("job_id", "group") and isinstance(value, str):
        try:
            validate_job_id(value) if name == "job_id" else validate_group(value)
        except (InvalidJobId, InputError) as exc:
            return str(exc)
    where = ".".join(loc)
    msg = str(first.get("msg", "invalid request"))
    return f"{where}: {msg}" if where else msg


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
