"""List-then-watch of one kind of runner object, in a thread: the executor's feed.

One paginated LIST at start (pages of LIST_PAGE objects, so a namespace with thousands
of Jobs never sits in memory as one answer), then one long WATCH from its
resourceVersion, resumed from the last version seen whenever the server ends it. A new
LIST only when the watch cannot be resumed (410 Gone, an error answer, a broken
connection) or when the owner asks for its safety net (`resync_due`). Answers are read
as raw JSON, never turned into the client's model objects (which costs more than the
request itself at a few hundred events a second), and each object is cut down to the
fields the controller reads as soon as it is decoded (`compact`), page by page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from qforge.k8s.throttle import Backoff, TokenBucket, retry_after_seconds

log = logging.getLogger(__name__)

LIST_PAGE = 500
# The API server ends a watch after this long (then it is resumed, without a LIST).
WATCH_SECONDS = 55


class ListWatch:
    def __init__(self, kind: str, call: Callable[..., Any], namespace: str, selector: str,
                 *, on_list: Callable[[list[dict[str, Any]], float], None],
                 on_event: Callable[[str, dict[str, Any]], None],
                 resync_due: Callable[[float], bool],
                 bucket: TokenBucket | None = None,
                 compact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.call = call  # e.g. BatchV1Api.list_namespaced_job
        self.namespace = namespace
        self.selector = selector
        self.on_list = on_list
        self.on_event = on_event
        self.resync_due = resync_due
        self.bucket = bucket
        self.compact = compact  # what is kept of each object (controller/k8s/compact.py)
        self.clock = clock
        self.lists = 0  # full listings made (start, 410, safety net)
        self.listed_at = -1e18
        self.synced = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._backoff = Backoff(initial=0.5, ceiling=15.0, clock=clock)
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        resp = self._response
        if resp is not None:
            # Not resp.close(): the watch thread is blocked reading that response, and
            # closing its buffered reader waits for the reader's lock, which the read
            # holds until the server sends something (up to WATCH_SECONDS): the
            # controller hung on SIGTERM until it was killed. Shutting the socket down
            # ends the read at once; the thread then sees _stop and returns.
            _shutdown(resp)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None or self.resync_due(self.clock() - self.listed_at):
                    rv = self._list()
                rv = self._watch(rv)
                self._backoff.succeeded()
                self.error = None
            except Exception as exc:  # any failure: list again, after a pause
                if self._stop.is_set():
                    return  # closed under its feet: the controller stops
                status = getattr(exc, "status", None)
                self.error = f"{type(exc).__name__}: {status or exc}"
                delay = self._backoff.failed(retry_after_seconds(getattr(exc, "headers",
                                                                         None)))
                log.warning("Watch of runner %s broke (%s); listing again in %.1f s",
                            self.kind, self.error, delay)
                rv = None
                self._stop.wait(delay)

    def _request(self, **params: Any) -> Any:
        if self.bucket is not None:
            self.bucket.acquire()
        return self.call(self.namespace, label_selector=self.selector,
                         _preload_content=False, **params)

    def _list(self) -> str:
        started = self.clock()
        items: list[dict[str, Any]] = []
        token: str | None = None
        rv = ""
        while True:
            params: dict[str, Any] = {"limit": LIST_PAGE, "_request_timeout": 60}
            if token:
                params["_continue"] = token
            resp = self._request(**params)
            page = json.loads(resp.data)
            resp.release_conn()
            meta = page.get("metadata") or {}
            compact = self.compact
            for item in page.pop("items", None) or []:
                items.append(compact(item) if compact is not None else item)
            del page
            rv = str(meta.get("resourceVersion") or rv)
            token = meta.get("continue")
            if not token:
                break
        self.lists += 1
        self.listed_at = started
        self.on_list(items, started)
        self.synced.set()
        log.debug("Listed %d runner %s", len(items), self.kind)
        return rv

    def _watch(self, rv: str) -> str | None:
        """Follow events from `rv`; the last version seen when the server ends the
        watch, None when it must be listed again (410 Gone or an error event)."""
        from kubernetes.watch.watch import iter_resp_lines

        resp = self._request(watch=True, resource_version=rv, allow_watch_bookmarks=True,
                             timeout_seconds=WATCH_SECONDS,
                             _request_timeout=(10, WATCH_SECONDS + 30))
        self._response = resp
        try:
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    return rv
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    log.info("Watch of runner %s: %s; listing again", self.kind,
                             obj.get("message") or obj.get("code"))
                    return None
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if kind != "BOOKMARK":
                    self.on_event(str(kind), obj if self.compact is None
                                  else self.compact(obj))
                if self.resync_due(self.clock() - self.listed_at):
                    return None
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                resp.release_conn()
        return rv


def _shutdown(resp: Any) -> None:
    """Shut down the socket under a streaming urllib3 response (the plain socket's
    shutdown, under TLS too: it wakes a thread blocked in a read of it)."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    with contextlib.suppress(Exception):
        if sock is not None:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            resp.close()
