"""A bound on request bodies, answered as a problem (413) like every other refusal. A
submission (`POST /api/v1/jobs`) has its own, larger bound, counted as it streams
(MAX_INPUT_BYTES, in the route); the other bodies are small JSON, read here whole (at
most `limit` bytes) before the route sees them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = "application/problem+json"


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[tuple[str, str]]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt  # (method, path) pairs with bounds of their own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in ("GET", "HEAD")
                or (scope["method"], scope["path"]) in self.exempt):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await self._too_large(scope, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks),
                          "more_body": False}
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return whole
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        detail = f"the request body is more than {self.limit} bytes"
        body = json.dumps({"type": "https://qforge.dev/problems/too-large",
                           "title": "Request too large", "status": 413, "detail": detail,
                           "instance": scope["path"], "exit_code": 2}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
