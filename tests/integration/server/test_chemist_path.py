"""The chemist's path through the front door, against a real server and a real worker
running real xtb: a SMILES library submitted from a "laptop" (QFORGE_SERVER), waited on
and exported gives what the same commands give on the store itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Server

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None:  # pragma: no cover - make installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)

LIBRARY = "O water\nC methane\nN ammonia\nCC(=O)[O-] acetate\n"


def _worker(server: Server) -> subprocess.CompletedProcess[str]:
    return server.local("worker", "--until-idle", "--max-concurrent", "2",
                        "--poll-interval", "0.2", timeout=600)


def test_a_smiles_library_through_the_server_gives_the_local_csv(
        server: Server, tmp_path: Path) -> None:
    alice = server.token("alice", "submitter")
    (server.home / "lib.smi").write_text(LIBRARY)

    sub = server.remote(alice, "submit", "lib.smi", "--group", "lib", "--task", "sp")
    assert sub.returncode == 0, sub.stderr
    assert "Submitted 4 molecules to group lib: 4 new jobs" in sub.stdout
    worker = _worker(server)
    assert worker.returncode == 0, worker.stdout + worker.stderr

    wait = server.remote(alice, "wait", "--group", "lib", "--timeout", "300")
    assert wait.returncode == 0, wait.stderr
    assert "All 4 job(s) finished: 4 COMPLETED" in wait.stdout

    for fmt in ("csv", "jsonl", "sdf", "xyz"):
        remote = server.remote(alice, "export", "--group", "lib", "--format", fmt)
        local = server.local("export", "--group", "lib", "--format", fmt)
        assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
        assert remote.stdout == local.stdout, fmt
    rows = server.remote(alice, "export", "--group", "lib", "--format", "csv").stdout
    assert rows.count("COMPLETED") == 4 and rows.startswith("job_id,name,group,")
    # the bond tables rode up with the molecules: RDKit reads the same molecules back
    from rdkit import Chem

    sdf = server.remote(alice, "export", "--group", "lib", "--format", "sdf").stdout
    assert sdf.count("from the input (smiles)") == 4
    back = [Chem.MolFromMolBlock(block) for block in sdf.split("$$$$\n") if block.strip()]
    assert sorted(Chem.MolToSmiles(m) for m in back) == sorted(
        Chem.MolToSmiles(Chem.MolFromSmiles(smi.split()[0])) for smi in LIBRARY.splitlines())

    # the same words and codes for every user command, through either door
    listed = json.loads(server.remote(alice, "list", "--group", "lib", "--json").stdout)
    assert listed == json.loads(server.local("list", "--group", "lib", "--json").stdout)
    assert {r["owner"] for r in listed} == {"alice"}  # the token's name
    job = listed[0]["job_id"]
    for args in (["show", job], ["show", job, "--json"], ["result", job],
                 ["result", job, "--format", "xyz"], ["list", "--group", "lib"]):
        remote, local = server.remote(alice, *args), server.local(*args)
        assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout), args
    # the rate is over the group's age, which grows between the two calls
    timeless = ("window_minutes", "rate_per_minute")
    remote_status, local_status = (
        {k: v for k, v in json.loads(done.stdout).items() if k not in timeless}
        for done in (server.remote(alice, "status", "--group", "lib", "--json"),
                     server.local("status", "--group", "lib", "--json")))
    assert remote_status == local_status and remote_status["finished_in_window"] == 4
    owners = [json.loads(done.stdout)["owners"] for done in (
        server.remote(alice, "status", "--owners", "--json"),
        server.local("status", "--owners", "--json"))]
    assert owners[0] == owners[1] == {}  # nothing running or queued any more
    for args, code in ((["show", "nosuch_job"], 3), (["wait", "--group", "nope"], 3),
                       (["export", "--format", "csv", "--group", "Bad/Group"], 2),
                       (["delete", listed[1]["job_id"], "../x"], 2)):
        remote, local = server.remote(alice, *args), server.local(*args)
        assert remote.returncode == local.returncode == code, (args, remote.stderr)
        assert remote.stderr.count("\n") == 1 and "Traceback" not in remote.stderr, args


def test_the_python_client_submits_every_kind_of_molecule_and_returns_rows(
        server: Server) -> None:
    token = server.token("bea", "submitter")
    code = f"""
import json, qforge
from rdkit import Chem
client = qforge.Client(server={server.url!r}, token={token!r})
methanol = Chem.AddHs(Chem.MolFromSmiles("CO"))
methanol.SetProp("_Name", "methanol")
water = {{"symbols": ["O", "H", "H"], "name": "water", "molecular_charge": 0,
          "geometry": [0.0, 0.0, 0.0, 0.0, 1.43, -1.1, 0.0, -1.43, -1.1]}}
res = client.submit(["N", methanol, water], group="py", task="sp")
print(json.dumps([j.name for j in res.jobs]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=server.base_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["N", "methanol", "water"]
    assert _worker(server).returncode == 0
    code = f"""
import json, qforge
client = qforge.Client(server={server.url!r}, token={token!r})
snap = client.wait(group="py", timeout=300)
rows = client.results(group="py", as_frame=False)
print(json.dumps({{"done": snap.done, "rows": rows}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=server.base_env())
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["done"] is True
    assert sorted(r["formula"] for r in out["rows"]) == ["CH4O", "H2O", "H3N"]
    assert all(r["status"] == "COMPLETED" and r["energy_eh"] < 0 for r in out["rows"])
    local = server.local("export", "--group", "py", "--format", "jsonl").stdout
    assert [json.loads(line) for line in local.splitlines()] == out["rows"]
