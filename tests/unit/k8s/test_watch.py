"""The list-then-watch feed against a scripted API (the real one: tests/cluster)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from qforge.k8s.watch import LIST_PAGE, ListWatch


class Stream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.lines = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        # in uneven chunks, as the network delivers them
        for i in range(0, len(self.lines), 7):
            yield self.lines[i:i + 7]

    def release_conn(self) -> None:
        pass


def job(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}}


class FakeApi:
    def __init__(self, jobs: int, events: list[list[dict[str, Any]]]) -> None:
        self.items = [job(f"j{i}", i + 1) for i in range(jobs)]
        self.events = events
        self.calls: list[dict[str, Any]] = []

    def __call__(self, namespace: str, **params: Any) -> Any:
        self.calls.append(params)
        if params.get("watch"):
            return Stream(self.events.pop(0))
        start = int(params.get("_continue") or 0)
        page = self.items[start:start + params["limit"]]
        token = str(start + len(page)) if start + len(page) < len(self.items) else None
        return SimpleNamespace(data=json.dumps({
            "items": page, "metadata": {"resourceVersion": "100", "continue": token}}),
            release_conn=lambda: None)


def feed(api: FakeApi, due: bool = False) -> tuple[ListWatch, list[Any]]:
    got: list[Any] = []
    lw = ListWatch("jobs", api, "ns", "a=b",
                   on_list=lambda items, at: got.append(("list", len(items))),
                   on_event=lambda kind, obj: got.append((kind, obj["metadata"]["name"])),
                   resync_due=lambda age: due)
    return lw, got


def test_the_listing_is_paginated_and_the_watch_resumes_from_its_version() -> None:
    api = FakeApi(LIST_PAGE + 20, [[{"type": "ADDED", "object": job("new", 101)},
                                    {"type": "BOOKMARK", "object": job("", 150)}]])
    lw, got = feed(api)
    rv = lw._list()
    assert got == [("list", LIST_PAGE + 20)] and rv == "100" and lw.lists == 1
    assert [c.get("_continue") for c in api.calls] == [None, str(LIST_PAGE)]
    assert lw._watch(rv) == "150"  # the bookmark's version: the next watch starts there
    assert got[1:] == [("ADDED", "new")]
    assert api.calls[-1]["resource_version"] == "100" and api.calls[-1]["watch"]


def test_gone_asks_for_a_new_listing() -> None:
    api = FakeApi(1, [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]])
    lw, _ = feed(api)
    assert lw._watch("5") is None


def test_the_safety_net_ends_the_watch_for_a_listing() -> None:
    api = FakeApi(1, [[{"type": "MODIFIED", "object": job("j0", 7)},
                       {"type": "MODIFIED", "object": job("j0", 8)}]])
    lw, got = feed(api, due=True)
    assert lw._watch("5") is None and got == [("MODIFIED", "j0")]


def test_every_listed_and_watched_object_is_compacted() -> None:
    api = FakeApi(LIST_PAGE + 3, [[{"type": "MODIFIED", "object": job("j0", 900)}]])
    for item in api.items:
        item["spec"] = {"template": {"big": "x" * 100}}
    seen: list[dict[str, Any]] = []

    def compact(obj: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": obj["metadata"], "small": True}

    lw = ListWatch("jobs", api, "ns", "a=b",
                   on_list=lambda items, at: seen.extend(items),
                   on_event=lambda kind, obj: seen.append(obj),
                   resync_due=lambda age: False, compact=compact)
    lw._watch(lw._list())
    assert len(seen) == LIST_PAGE + 4 and all(o.get("small") for o in seen)


def test_close_ends_a_watch_blocked_on_a_silent_server_at_once() -> None:
    """A watch blocked reading a real socket (an API server with nothing to say) is
    ended by close() at once: the client hangs up, not the server. (Closing the
    response instead waited for the read's lock until the server spoke or ended the
    watch: a controller sent SIGTERM hung until it was killed.)"""
    import socket
    import threading

    import urllib3

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client_left, server_gave_up = threading.Event(), threading.Event()

    def silent_server() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # the watch request
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            conn.settimeout(30)  # the bound: then the server hangs up itself
            try:
                if conn.recv(1) == b"":
                    client_left.set()
            except TimeoutError:
                server_gave_up.set()

    server = threading.Thread(target=silent_server, daemon=True)
    server.start()
    pool = urllib3.PoolManager()
    listed: list[Any] = []

    def call(namespace: str, **params: Any) -> Any:
        if not params.get("watch"):
            return SimpleNamespace(data=json.dumps({"metadata": {"resourceVersion": "1"},
                                                    "items": []}).encode(),
                                   release_conn=lambda: None)
        return pool.request("GET", f"http://127.0.0.1:{port}/jobs?watch=1",
                            preload_content=False)

    watch = ListWatch("jobs", call, "ns", "a=b", on_list=lambda items, at: listed.append(1),
                      on_event=lambda kind, obj: None, resync_due=lambda age: False)
    watch.start()
    try:
        from tests.waiting import wait_until

        wait_until(lambda: watch._response is not None, 30, "the watch to be open")
    finally:
        watch.close()
    server.join(timeout=60)
    listener.close()
    assert client_left.is_set() and not server_gave_up.is_set()
    assert not watch._thread.is_alive()
