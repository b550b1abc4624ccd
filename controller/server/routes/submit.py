"""Submissions: NDJSON streamed in (qforge.service.wire), validated line by line by a
thread as it arrives, so memory stays bounded by the batches in flight, not the upload."""

import asyncio
import contextlib
import logging
import queue
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from qforge.auth.roles import Identity
from qforge.inputs import BadRecord, ReadMolecule
from qforge.server.routes import Context
from qforge.server.routes.shapes import API
from qforge.service import wire
from qforge.service.manager import JobManager
from qforge.service.models import SubmitResult
from qforge.service.problems import TooLarge, UsageError

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024 * 1024  # one molecule's line in a submission


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    settings, manager = ctx.settings, ctx.manager
    Who = Annotated[Identity, Depends(ctx.identity)]

    @api.post(f"{API}/jobs", tags=["jobs"], status_code=201, response_model=SubmitResult,
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

    return api


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
