"""Conformer ensembles through the front door: `qforge submit --conformers` from a
"laptop" (QFORGE_SERVER), a real worker running real xtb, and the per-molecule export,
the status and the campaign page's live line giving what the store itself gives; the
Python client's `conformers=` through the server too."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from qforge.client.api import Client

from .conftest import Server

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None:  # pragma: no cover - make installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)

LIBRARY = "CCCC butane\nO water\n"


def _worker(server: Server) -> subprocess.CompletedProcess[str]:
    return server.local("worker", "--until-idle", "--max-concurrent", "2",
                        "--poll-interval", "0.2", timeout=600)


def test_an_ensemble_through_the_server_gives_the_local_rows(server: Server) -> None:
    alice = server.token("alice", "submitter")
    (server.home / "lib.smi").write_text(LIBRARY)
    sub = server.remote(alice, "submit", "lib.smi", "--conformers", "6", "--group", "ens")
    assert sub.returncode == 0, sub.stderr
    listed = json.loads(server.local("list", "--group", "ens", "--json").stdout)
    n = len(listed)
    assert n >= 3  # butane: anti and gauche; water: one
    assert f"Submitted {n} conformer jobs of 2 molecules to group ens: {n} new jobs" \
        in sub.stdout
    assert len({r["molecule"] for r in listed}) == 2
    assert {r["spec"]["name"] for r in listed} >= {"butane.c01", "butane.c02", "water.c01"}
    assert _worker(server).returncode == 0

    for fmt in ("csv", "jsonl", "sdf"):
        remote = server.remote(alice, "export", "--group", "ens", "--format", fmt,
                               "--per-molecule")
        local = server.local("export", "--group", "ens", "--format", fmt, "--per-molecule")
        assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
        assert remote.stdout == local.stdout, fmt
    rows = [json.loads(line) for line in server.remote(
        alice, "export", "--group", "ens", "--format", "jsonl", "--per-molecule").stdout
        .splitlines()]
    assert [(r["name"], r["conformers"]) for r in rows] == [("butane", n - 1), ("water", 1)]
    assert all(r["converged"] == r["conformers"] and r["energy_eh"] < 0 for r in rows)

    remote_status = server.remote(alice, "status", "--group", "ens")
    local_status = server.local("status", "--group", "ens")
    line = f"2 of 2 molecules complete; {n} of {n} conformer jobs"
    assert line in remote_status.stdout and line in local_status.stdout
    as_json = json.loads(server.remote(alice, "status", "--group", "ens", "--json").stdout)
    assert as_json["molecules"] == {"complete": 2, "total": 2, "jobs_finished": n, "jobs": n}
    with server.client(alice) as http:
        live = http.get("/ui/api/groups/ens/live").json()
    assert live["molecules"] == line

    completed = server.remote(alice, "export", "--group", "ens", "--format", "csv",
                              "--per-molecule", "--status", "completed")
    local_completed = server.local("export", "--group", "ens", "--format", "csv",
                                   "--per-molecule", "--status", "completed")
    assert completed.returncode == local_completed.returncode == 0
    assert completed.stdout == local_completed.stdout and completed.stdout.count("\n") == 3

    client = Client(server=server.url, token=alice)
    result = client.submit(["CCO"], group="py", conformers=4)
    assert result.molecules == 1 and all(j.name and ".c0" in j.name for j in result.jobs)
    assert "Traceback" not in server.server_log()
