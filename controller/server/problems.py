"""Errors as HTTP answers: RFC 9457 problem+json with the command line's one-line
messages and its exit code (the extension member `exit_code`), and the handlers that
turn every exception a request raises into one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from qforge.ids import InvalidJobId, validate_job_id
from qforge.service.problems import USER_ERRORS, InvalidMolecules, Problem, problem_of
from qforge.store.groups import validate_group
from qforge_runner.errors import InputError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


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


def install_handlers(app: FastAPI) -> None:
    """Every exception a request raises answered as a problem."""

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
                                        first_error(exc.errors())),
                                instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed",
                413: "too-large"}.get(exc.status_code, "http")
        detail = ("no such route" if exc.status_code == 404
                  else str(exc.detail or "request refused"))
        return problem_response(Problem(exc.status_code, 2, kind, str(exc.detail), detail),
                                instance=request.url.path)


def first_error(errors: Sequence[Any]) -> str:
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
