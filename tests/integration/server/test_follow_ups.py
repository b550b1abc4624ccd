"""Follow-up steps through the front door: `qforge submit --then` from a "laptop"
(QFORGE_SERVER) against a real server, a real worker and real xtb; `show`, `status` and
`cancel` of waiting jobs give through the server what they give on the store."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.molecules import AMMONIA, WATER_EXPERIMENTAL

from .conftest import Server

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None:  # pragma: no cover - make installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)


def test_then_through_the_server_as_on_the_store(server: Server) -> None:
    alice = server.token("alice", "submitter")
    (server.home / "water.xyz").write_text(WATER_EXPERIMENTAL)
    (server.home / "ammonia.xyz").write_text(AMMONIA)
    sub = server.remote(alice, "submit", "water.xyz", "ammonia.xyz", "--group", "f",
                        "--task", "opt", "--then", "sp", "--then-method", "gfn1",
                        "--then-for", "all")
    assert sub.returncode == 0, sub.stderr
    assert "Then sp: 2 follow-up jobs of each job, waiting for their parents" in sub.stdout
    listed = json.loads(server.local("list", "--group", "f", "--json").stdout)
    follow = [r for r in listed if r.get("depends_on")]
    assert len(follow) == 2 and {r["owner"] for r in listed} == {"alice"}
    assert all(r["spec"]["method"] == "gfn1" and r["spec"]["task"] == "sp" for r in follow)
    child = follow[0]["job_id"]
    remote, local = server.remote(alice, "show", child), server.local("show", child)
    assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout)
    # the counts (the last line's rate is over the group's age, which grows meanwhile)
    remote, local = (done("status", "--group", "f").stdout.splitlines()[:-1]
                     for done in (lambda *a: server.remote(alice, *a), server.local))
    assert remote == local and "  QUEUED            4  (2 waiting for other jobs)" in local
    assert "waiting for job " in server.remote(alice, "show", child).stdout
    status = json.loads(server.remote(alice, "status", "--json").stdout)
    assert status["waiting"] == 2 and status["counts"]["QUEUED"] == 4
    # a waiting job is cancelled like any other; the worker acts on the request
    assert server.remote(alice, "cancel", child).returncode == 0
    worker = server.local("worker", "--until-idle", "--poll-interval", "0.2", timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    after = {r["job_id"]: r for r in json.loads(
        server.remote(alice, "list", "--group", "f", "--json").stdout)}
    assert after[child]["status"] == "CANCELLED"
    assert after[child]["error"]["message"] == "cancelled by user before it started"
    other = follow[1]["job_id"]
    assert after[other]["status"] == "COMPLETED"
    assert sorted(r["status"] for r in after.values()) == [
        "CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED"]
