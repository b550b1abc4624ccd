"""The front door in the cluster: the chart's server Deployment, reached from outside
through its Service (a port-forward, as NOTES.txt tells a platform engineer without an
Ingress); a chemist's CLI submits an SDF with a token, waits and exports, while the
controller pod is deleted: the API keeps answering and nothing is lost."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_until

from .conftest import DEPLOY, Release

SERVER = f"{DEPLOY}-server"
SDF = """water
  qforge e2e

  3  2  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.1173 O   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000    0.7572   -0.4692 H   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000   -0.7572   -0.4692 H   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
M  END
$$$$
ammonia
  qforge e2e

  4  3  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.1162 N   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000    0.9397   -0.2711 H   0  0  0  0  0  0  0  0  0  0  0  0
    0.8138   -0.4699   -0.2711 H   0  0  0  0  0  0  0  0  0  0  0  0
   -0.8138   -0.4699   -0.2711 H   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
M  END
$$$$
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def front_door(release: Release, tmp_path: Path) -> Iterator[str]:
    """The server's Service on a local port (kubectl port-forward)."""
    release.k("rollout", "status", f"deploy/{SERVER}", "--timeout=180s", timeout=200)
    port = _free_port()
    log = open(tmp_path / "port-forward.log", "w")  # noqa: SIM115 - closed below
    kube = release.kube
    proc = subprocess.Popen(
        [str(kube.tools["kubectl"]), "--kubeconfig", str(kube.kubeconfig), "-n", release.namespace,
         "port-forward", f"svc/{SERVER}", f"{port}:80", "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 60,
                   "the server through a port-forward", tolerate=(httpx.HTTPError,))
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def _cli(url: str, token: str, *args: str, stdin: str | None = None,
         home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOBS_DIR",)}
    env.update(QFORGE_SERVER=url, QFORGE_TOKEN=token, XDG_CONFIG_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "qforge.cli.main", *args], input=stdin,
                          text=True, capture_output=True, env=env, timeout=600, check=False)


def test_a_chemist_outside_the_cluster_submits_waits_and_exports_through_the_service(
        release: Release, front_door: str, tmp_path: Path) -> None:
    secret = release.kj("get", "secret", f"{DEPLOY}-admin-token")
    admin = base64.b64decode(secret["data"]["token"]).decode()
    with httpx.Client(base_url=front_door, timeout=30,
                      headers={"Authorization": f"Bearer {admin}"}) as http:
        assert http.get("/api/v1/whoami").json() == {"name": "admin", "role": "admin"}
    # the administrator's fallback hands out a chemist's token
    made = release.k("exec", f"deploy/{SERVER}", "--", "qforge", "token", "create",
                     "e2e-chemist", "--role", "submitter", "--replace", timeout=120)
    token = made.stdout.strip().splitlines()[-1]

    (tmp_path / "lib.sdf").write_text(SDF)
    sub = _cli(front_door, token, "submit", str(tmp_path / "lib.sdf"), "--group",
               "e2e-server", "--task", "sp", "--force", "--json", home=tmp_path)
    assert sub.returncode == 0, sub.stderr
    ids = [json.loads(line)["job_id"] for line in sub.stdout.splitlines()]
    assert len(ids) == 2

    # the controller goes away; the front door does not
    old = release.controller_pod()["metadata"]["name"]
    release.k("delete", "pod", old, "--wait=false")
    answers = [_cli(front_door, token, "status", "--group", "e2e-server", "--json",
                    home=tmp_path).returncode for _ in range(5)]
    assert answers == [0] * 5

    wait = _cli(front_door, token, "wait", "--group", "e2e-server", "--timeout", "540",
                home=tmp_path)
    assert wait.returncode == 0, wait.stdout + wait.stderr
    csv_text = _cli(front_door, token, "export", "--group", "e2e-server", "--format", "csv",
                    home=tmp_path).stdout
    rows = csv_text.strip().splitlines()[1:]
    assert len(rows) == 2 and all(",COMPLETED," in r for r in rows), csv_text
    for job_id in ids:  # nothing lost, nothing run twice
        assert len(release.runner_jobs(job_id)) <= 1
        assert release.metadata(job_id)["owner"] == "e2e-chemist"
