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
