"""What a client can send that it should not, and what many clients send at once: every
bad request is a 4xx problem+json that changes nothing; concurrent and interrupted
submissions leave each distinct molecule exactly once."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from qforge.client.api import Client
from qforge.record import Status
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import Molecule, parse_xyz
from tests.molecules import WATER_EXPERIMENTAL

from .conftest import Server, running_server


def molecules(n: int) -> list[Molecule]:
    """`n` distinct waters (deduplication folds identical inputs only)."""
    base = parse_xyz(WATER_EXPERIMENTAL)
    return [base.model_copy(update={"geometry": tuple(
        (x + 0.002 * i, y, z) for x, y, z in base.geometry), "comment": f"w{i}"})
        for i in range(n)]


def qcschema(mol: Molecule, name: str) -> dict[str, object]:
    bohr = 1 / 0.52917721067
    return {"symbols": list(mol.symbols), "name": name,
            "geometry": [c * bohr for xyz in mol.geometry for c in xyz]}


def body(mols: list[Molecule], options: str = '{"group": "up"}') -> bytes:
    lines = [f'{{"options": {options}}}']
    for i, mol in enumerate(mols):
        lines.append(json.dumps({"symbols": list(mol.symbols), "name": f"w{i}",
                                 "geometry": [list(a) for a in mol.geometry]}))
    return ("\n".join(lines) + "\n").encode()


def test_fifty_concurrent_submitters_of_overlapping_libraries(server: Server) -> None:
    tokens = [server.token(f"chemist{k}", "submitter") for k in range(5)]
    distinct = molecules(60)
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def submit(k: int) -> None:
        try:
            client = Client(server=server.url, token=tokens[k % 5])
            mine = [qcschema(distinct[(k + j) % 60], f"m{(k + j) % 60}") for j in range(20)]
            res = client.submit(mine, group=f"lib{k % 3}", task="sp")
            results.append([j.job_id for j in res.jobs])
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert len(results) == 50 and all(len(r) == 20 for r in results)
    store = JobStore(server.jobs)
    records = [store.read(j) for j in store.job_ids()]
    assert len(records) == 60  # every distinct molecule exactly once
    assert len({r.input_hash for r in records}) == 60
    assert {j for r in results for j in r} == {r.job_id for r in records}
    assert all(r.status is Status.QUEUED for r in records)


def _cut_upload(server: Server, token: str, data: bytes) -> None:
    """Sends half of a chunked submission, then drops the connection."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: Bearer " + token.encode() + b"\r\n"
                  b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        half = data[: len(data) // 2]
        s.sendall(f"{len(half):x}\r\n".encode() + half + b"\r\n")


def test_an_upload_cut_halfway_writes_nothing_and_a_repeat_completes_once(
        server: Server) -> None:
    token = server.token("cut", "submitter")
    data = body(molecules(40))
    before = server.store_files()
    _cut_upload(server, token, data)
    with server.client(token) as http:
        # the server is still there for others, and the cut upload wrote nothing
        assert http.get("/api/v1/status").json()["total"] == 0
        first = http.post("/api/v1/jobs", content=data)
        assert first.status_code == 201, first.text
        jobs = first.json()["jobs"]
        assert len(jobs) == 40 and all(j["duplicate_of"] is None for j in jobs)
        # a repeat (the answer lost on the way back, say) changes nothing: all known
        again = http.post("/api/v1/jobs", content=data)
        assert again.status_code == 201
        assert [j["duplicate_of"] for j in again.json()["jobs"]] == [j["job_id"] for j in jobs]
    assert before == [] or set(before) <= set(server.store_files())
    assert len(JobStore(server.jobs).job_ids()) == 40


BAD_GETS = [
    ("/api/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404),
    ("/api/v1/jobs/%2e%2e", 400),
    ("/api/v1/jobs/UPPER_case", 400),
    ("/api/v1/jobs/" + "a" * 300, 400),
    ("/api/v1/jobs/x%00y", 400),
    ("/api/v1/jobs?status=DONE", 400),
    ("/api/v1/jobs?group=..%2Fetc", 400),
    ("/api/v1/groups/..%2Fetc", 404),
    ("/api/v1/groups/Bad%20Group", 400),
    ("/api/v1/export?format=pdb", 400),
    ("/api/v1/export", 400),
    ("/api/v1/progress", 400),
    ("/api/v1/groups/nope/progress", 404),
    ("/api/v1/groups/nope/events", 404),
    ("/api/v1/events?job_id=nope", 404),
    ("/api/v1/jobs/nope/result?format=pdf", 400),
    ("/api/v1/nothing-here", 404),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
def test_bad_urls_are_problems(server: Server, path: str, status: int) -> None:
    token = server.tokens.get("admin") or server.token("admin", "admin")
    with server.client(token) as http:
        response = http.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] and "\n" not in response.json()["detail"]


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


BAD_BODIES = [
    ("empty", b"", 400),
    ("options not first", b'{"symbols": ["O"]}\n', 422),
    ("options malformed", b'{"options": {"group": 5, "spec": []}}\n{"symbols": ["O"]}\n', 422),
    ("unknown option", b'{"options": {"spec": {"colour": "red"}}}\n' + body(molecules(1))
     .split(b"\n", 1)[1], 422),
    ("no molecule", b'{"options": {}}\n', 400),
    ("truncated molecule", body(molecules(2))[:-20], 422),
    ("not JSON", b'{"options": {}}\nthis is not json\n', 422),
    ("nested 100,000 deep", b'{"options": {}}\n' + _deep(100_000) + b"\n", 422),
    ("options nested deep", _deep(100_000) + b"\n", 422),
    ("unknown element", b'{"options": {}}\n{"symbols": ["Xx"], "geometry": [[0,0,0]]}\n', 422),
    ("coordinates missing", b'{"options": {}}\n{"symbols": ["O", "H"], "geometry": [[0,0,0]]}\n',
     422),
    ("charge and electrons", b'{"options": {"charge": 1}}\n{"symbols": ["H"], '
     b'"geometry": [[0,0,0]]}\n', 422),
    ("a NaN coordinate", b'{"options": {}}\n{"symbols": ["H", "H"], '
     b'"geometry": [[0,0,0],[0,0,NaN]]}\n', 422),
]


@pytest.mark.parametrize(("what", "data", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_submissions_are_problems_and_write_nothing(
        server: Server, what: str, data: bytes, status: int) -> None:
    token = server.token("sub", "submitter")
    before = server.store_files()
    with server.client(token) as http:
        response = http.post("/api/v1/jobs", content=data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] and "\n" not in problem["detail"], problem
    assert server.store_files() == before


def test_bad_json_bodies_elsewhere(server: Server) -> None:
    token = server.token("adm", "admin")
    with server.client(token) as http:
        for path, content in (("/api/v1/cancel", b"{"), ("/api/v1/delete", b"[]"),
                              ("/api/v1/delete", b'{"job_ids": []}'),
                              ("/api/v1/cancel", b'{"job_ids": ["a"], "group": "g"}'),
                              ("/api/v1/cancel", b'{"job_ids": [], "extra": 1}')):
            response = http.post(path, content=content,
                                 headers={"Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (path, content, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        huge = http.post("/api/v1/cancel", content=b'{"job_ids": [' + b'"a",' * 3_000_000
                         + b'"a"]}', headers={"Content-Type": "application/json"})
        assert huge.status_code == 413, huge.text
        assert huge.headers["content-type"] == "application/problem+json"


def test_an_oversized_submission_is_413_and_too_many_requests_429(tmp_path: Path) -> None:
    small = {"MAX_INPUT_BYTES": "4000", "API_RATE_LIMIT": "0.01", "API_RATE_BURST": "20"}
    with running_server(tmp_path, env=small) as srv:
        token = srv.token("bulk", "submitter")
        before = srv.store_files()
        with srv.client(token) as http:
            big = http.post("/api/v1/jobs", content=body(molecules(40)))
            assert big.status_code == 413, big.text
            assert "MAX_INPUT_BYTES=4000" in big.json()["detail"]
            streamed = http.post("/api/v1/jobs", content=iter([body(molecules(40))]))
            assert streamed.status_code == 413  # no Content-Length: counted as it comes
            assert srv.store_files() == before
            codes = [http.get("/api/v1/whoami").status_code for _ in range(30)]
            assert 429 in codes and codes[0] == 200
            refused = http.get("/api/v1/whoami")
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        with srv.client(srv.token("other", "viewer")) as http:
            assert http.get("/api/v1/whoami").status_code == 200  # per token


def test_healthz_needs_no_token_and_readyz_says_the_store_is_there(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"] and "/api/v1/groups/{group}" in spec["paths"]
