"""Who may do what through the server: every route against every kind of caller, as one
table. A refusal is 401 (no token, a wrong one, a revoked one) or 403 (a role or an owner
that does not allow it), in problem+json, and changes nothing in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from qforge.record import Status
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL
from tests.unit.core.campaign_helpers import summary

from .conftest import Server

CALLERS = ("none", "wrong", "revoked", "viewer", "owner", "other", "admin")
READ = {"none": 401, "wrong": 401, "revoked": 401, "viewer": 200, "owner": 200,
        "other": 200, "admin": 200}
SUBMIT = {**READ, "viewer": 403, "owner": 201, "other": 201, "admin": 201}
CHANGE_OWN = {**READ, "viewer": 403, "other": 403}  # owner and admin: 200
# A group's cancel cancels the caller's own jobs of it and keeps the others' (named in
# its warnings): another submitter is answered, and changes nothing.
CANCEL_GROUP = {**CHANGE_OWN, "other": 200}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {job} and {group} filled in per case
    expected: dict[str, int]
    body: Callable[[int], Any] | None = None
    content: Callable[[int], bytes] | None = None
    finished: bool = False  # the case's job is COMPLETED first (delete needs it)


def _molecule_line(i: int) -> bytes:
    mol = parse_xyz(WATER_EXPERIMENTAL)
    geometry = [[x + 0.01 * i + 0.5, y, z] for x, y, z in mol.geometry]
    return (b'{"options": {"group": "g"}}\n' + (
        f'{{"symbols": {list(mol.symbols)!r}, "geometry": {geometry!r}, "name": "w{i}"}}'
        .replace("'", '"')).encode() + b"\n")


ROUTES = [
    Route("list", "GET", "/api/v1/jobs", READ),
    Route("list a group", "GET", "/api/v1/jobs?group={group}", READ),
    Route("show", "GET", "/api/v1/jobs/{job}", READ),
    Route("result", "GET", "/api/v1/jobs/{job}/result", READ, finished=True),
    Route("status", "GET", "/api/v1/status", READ),
    Route("group", "GET", "/api/v1/groups/{group}", READ),
    Route("export", "GET", "/api/v1/export?format=csv&group={group}", READ),
    Route("progress", "GET", "/api/v1/groups/{group}/progress", READ),
    Route("job progress", "GET", "/api/v1/progress?job_id={job}", READ),
    Route("group events", "GET", "/api/v1/groups/{group}/events", READ, finished=True),
    Route("events", "GET", "/api/v1/events?job_id={job}", READ, finished=True),
    Route("whoami", "GET", "/api/v1/whoami", READ),
    Route("submit", "POST", "/api/v1/jobs", SUBMIT, content=_molecule_line),
    Route("cancel", "POST", "/api/v1/cancel", CHANGE_OWN,
          body=lambda i: {"job_ids": ["{job}"]}),
    Route("cancel a group", "POST", "/api/v1/cancel", CANCEL_GROUP,
          body=lambda i: {"group": "{group}"}),
    Route("delete", "DELETE", "/api/v1/jobs/{job}", CHANGE_OWN, finished=True),
    Route("delete many", "POST", "/api/v1/delete", CHANGE_OWN,
          body=lambda i: {"job_ids": ["{job}"]}, finished=True),
]


@pytest.fixture
def callers(server: Server) -> dict[str, str | None]:
    tokens: dict[str, str | None] = {
        "none": None, "wrong": "qf_" + "x" * 43,
        "revoked": server.token("gone", "admin"), "viewer": server.token("val", "viewer"),
        "owner": server.token("sam", "submitter"), "other": server.token("sue", "submitter"),
        "admin": server.token("ada", "admin")}
    assert server.local("token", "revoke", "gone").returncode == 0
    return tokens


def _job(store: JobStore, i: int, *, finished: bool) -> tuple[str, str]:
    """A job of sam's in a group of its own (so a group cancel touches only it)."""
    mol = parse_xyz(WATER_EXPERIMENTAL)
    moved = mol.model_copy(update={"geometry": tuple((x + 0.001 * i, y, z)
                                                     for x, y, z in mol.geometry)})
    group = f"case{i}"
    sub = store.submit_batch([(JobSpec(molecule=moved, name=f"c{i}"), moved.to_xyz())],
                             group=group, owner="sam")[0]
    if finished:
        rec = sub.record
        store.write(rec.evolve(status=Status.COMPLETED, finished_at=rec.created_at,
                               started_at=rec.created_at, result=summary(-5.07)))
        for marker in store.layout.queue.iterdir():
            if marker.name.endswith(rec.job_id):
                marker.unlink()
        store.repair.ensure_done(store.read(rec.job_id))
    return sub.record.job_id, group


def test_every_route_against_every_caller(server: Server,
                                          callers: dict[str, str | None]) -> None:
    store = JobStore(server.jobs)
    failures: list[str] = []
    i = 0
    for route in ROUTES:
        for caller in CALLERS:
            i += 1
            job, group = _job(store, i, finished=route.finished)
            path = route.path.format(job=job, group=group)
            kw: dict[str, Any] = {}
            if route.body is not None:
                body = route.body(i)
                kw["json"] = {k: ([v2.format(job=job) for v2 in v] if isinstance(v, list)
                                  else v.format(group=group)) for k, v in body.items()}
            if route.content is not None:
                kw["content"] = route.content(i)
            before = server.store_files()
            with server.client(callers[caller]) as http:
                response = http.request(route.method, path, **kw)
            want = route.expected[caller]
            if response.status_code != want:
                failures.append(f"{route.name} as {caller}: {response.status_code} "
                                f"(expected {want}): {response.text[:200]}")
                continue
            if want >= 400:
                problem = response.json()
                if (response.headers["content-type"] != "application/problem+json"
                        or problem["status"] != want or not problem["detail"]
                        or "\n" in problem["detail"]):
                    failures.append(f"{route.name} as {caller}: not one problem line: "
                                    f"{response.text[:200]}")
                if server.store_files() != before:
                    failures.append(f"{route.name} as {caller}: a refusal changed the store")
    assert not failures, "\n".join(failures)


def test_a_submitter_cannot_touch_another_s_job_through_the_command_line(
        server: Server, callers: dict[str, str | None]) -> None:
    store = JobStore(server.jobs)
    job, _ = _job(store, 1000, finished=True)
    other = server.remote(callers["other"], "delete", job)
    assert other.returncode == 2
    assert other.stderr.strip() == (f"qforge: error: token 'sue' (submitter) may not delete "
                                    f"job {job}: it belongs to sam")
    assert store.read(job).status is Status.COMPLETED
    queued, group = _job(store, 1001, finished=False)
    kept = server.remote(callers["other"], "cancel", "--group", group)
    assert kept.returncode == 0 and "Cancel requested for 0 job(s)" in kept.stdout
    assert f"job {queued} belongs to sam: kept" in kept.stderr
    assert not store.cancels.requested(queued)
    viewer = server.remote(callers["viewer"], "cancel", job)
    assert viewer.returncode == 2 and "viewer" in viewer.stderr
    owner = server.remote(callers["owner"], "delete", job)
    assert owner.returncode == 0 and f"Deleted job {job} (COMPLETED)" in owner.stdout
    nobody = server.remote(None, "list")
    assert nobody.returncode == 2 and "QFORGE_SERVER is set but no token" in nobody.stderr
    wrong = server.remote("qf_not-a-token", "list")
    assert wrong.returncode == 2 and "unknown or revoked token" in wrong.stderr


def test_a_revoked_token_is_refused_at_once(server: Server) -> None:
    token = server.token("temp", "submitter")
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/api/v1/whoami").json() == {"name": "temp", "role": "submitter"}
        assert server.local("token", "revoke", "temp").returncode == 0
        assert http.get("/api/v1/whoami").status_code == 401
