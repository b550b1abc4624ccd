"""`qforge retry` through the front door, against a real server and a real worker with
real xtb: the same output and exit codes as on the store itself; a submitter retries its
own jobs only; refusals are problem+json and change nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from qforge.auth import local_owner as local_user
from qforge.store.jobstore import JobStore
from tests.molecules import BENZENE

from .conftest import Server

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None:  # pragma: no cover - make installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)

# fails its SCC with xtb 6.5.1 (tests/integration/core/test_retry_ladder.py)
SCC_FAILS = ("--charge", "1", "--uhf", "3", "--scc-iterations", "8", "--task", "sp")


def test_retry_through_the_server_is_the_local_retry(server: Server) -> None:
    alice = server.token("alice", "submitter")
    bob = server.token("bob", "submitter")
    ids = []
    for name in ("one", "two"):
        sub = server.remote(alice, "submit", "-", "--json", "--group", "camp", "--name", name,
                            "--force", *SCC_FAILS, stdin=BENZENE)
        assert sub.returncode == 0, sub.stderr
        ids.append(json.loads(sub.stdout)["job_id"])
    worker = server.local("worker", "--until-idle", "--poll-interval", "0.2", timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    store = JobStore(server.jobs)
    before = [store.read(i) for i in ids]
    assert {r.status.value for r in before} == {"FAILED"}

    # refusals: one line, the local exit code, nothing changed
    denied = server.remote(bob, "retry", ids[0])
    assert denied.returncode == 2
    assert denied.stderr.strip() == (
        f"qforge: error: token 'bob' (submitter) may not retry job {ids[0]}: "
        "it belongs to alice")
    missing_remote = server.remote(alice, "retry", ids[0], "no-such-job")
    missing_local = server.local("retry", ids[0], "no-such-job")
    assert missing_remote.returncode == missing_local.returncode == 3
    assert missing_remote.stderr == missing_local.stderr == (
        "qforge: error: no such job: no-such-job\n")
    with server.client(alice) as http:
        bad = http.post("/api/v1/retry", json={"group": "camp", "error_type": "bogus"})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith(
            "application/problem+json")
        spec = http.get("/api/v1/openapi.json").json()
        assert "post" in spec["paths"]["/api/v1/retry"]
    assert [store.read(i) for i in ids] == before

    # the same command, through the server and on the store: the same output
    remote = server.remote(alice, "retry", ids[0])
    local = server.local("retry", ids[1])
    assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
    assert remote.stdout == f"Retried job {ids[0]}: attempt 2 queued\n"
    assert local.stdout == f"Retried job {ids[1]}: attempt 2 queued\n"
    again = server.remote(alice, "retry", "--group", "camp")
    assert again.stdout == server.local("retry", "--group", "camp").stdout == (
        "Retried 0 job(s) of group camp\n")
    worker = server.local("worker", "--until-idle", "--poll-interval", "0.2", timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    for fmt in ("csv", "jsonl"):
        r = server.remote(alice, "export", "--group", "camp", "--format", fmt)
        lo = server.local("export", "--group", "camp", "--format", fmt)
        assert r.returncode == lo.returncode == 0 and r.stdout == lo.stdout, fmt
    assert [store.read(i).attempt for i in ids] == [2, 2]
    assert [store.read(i).history[0].by for i in ids] == ["alice", local_user()]
