"""`qforge login` keeps a profile only its owner reads; an authenticating proxy's user
header is trusted only when the server is told to; the server's own metrics count
requests by route and code."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx

from tests.waiting import wait_until

from .conftest import Server, free_port, run_qforge, running_server


def test_login_keeps_a_0600_profile_and_every_command_then_uses_it(
        server: Server, tmp_path: Path) -> None:
    token = server.token("lena", "submitter")
    env = server.base_env()
    bad = run_qforge("login", server.url, env=env, stdin="qf_wrong\n")
    assert bad.returncode == 2 and "unknown or revoked token" in bad.stderr
    profile = Path(env["XDG_CONFIG_HOME"]) / "qforge" / "profile.json"
    assert not profile.exists()  # a token the server refuses is not kept

    done = run_qforge("login", server.url, env=env, stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert f"Signed in to {server.url} as lena (submitter)" in done.stdout
    assert token not in done.stdout + done.stderr
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert json.loads(profile.read_text()) == {"url": server.url, "token": token}

    (tmp_path / "w.xyz").write_text("3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\n"
                                    "H 0 -0.7572 -0.4692\n")
    sub = run_qforge("submit", str(tmp_path / "w.xyz"), "--group", "viaprofile", env=env)
    assert sub.returncode == 0, sub.stderr
    listed = run_qforge("list", "--group", "viaprofile", "--json", env=env)
    assert [r["owner"] for r in json.loads(listed.stdout)] == ["lena"]
    # QFORGE_SERVER set and empty, or --jobs-dir: the store here, whatever is saved
    local = run_qforge("--jobs-dir", str(tmp_path / "other"), "list", "--json", env=env)
    assert local.returncode == 0 and json.loads(local.stdout) == []
    empty = run_qforge("list", "--json", env={**env, "QFORGE_SERVER": "",
                                               "JOBS_DIR": str(tmp_path / "other")})
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QFORGE_TOKEN"}
    env.update(QFORGE_SERVER=f"http://127.0.0.1:{free_port()}", QFORGE_TOKEN="qf_x",
               XDG_CONFIG_HOME=str(tmp_path))
    done = run_qforge("status", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("qforge: error: cannot reach http://127.0.0.1:")
    assert done.stderr.count("\n") == 1
    bad_url = run_qforge("status", env={**env, "QFORGE_SERVER": "ftp://x"})
    assert bad_url.returncode == 2 and "not a server URL" in bad_url.stderr


def test_a_proxy_user_header_counts_only_when_trusted(tmp_path: Path,
                                                      server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        plain = http.get("/api/v1/whoami", headers={"X-Auth-Request-User": "mallory"})
        assert plain.status_code == 401  # not behind a trusted proxy: a header is nothing
    (tmp_path / "proxied").mkdir()
    with running_server(tmp_path / "proxied", "--trust-proxy-header") as proxied, \
            httpx.Client(base_url=proxied.url, timeout=30) as http:
        who = http.get("/api/v1/whoami", headers={"X-Auth-Request-User": "alice"})
        assert who.json() == {"name": "alice", "role": "submitter"}
        assert http.get("/api/v1/whoami").status_code == 401


def test_metrics_count_requests_by_route_and_code(tmp_path: Path) -> None:
    port = free_port()
    with running_server(tmp_path, "--metrics-port", str(port),
                        "--metrics-address", "127.0.0.1") as srv:
        token = srv.token("m", "viewer")
        with srv.client(token) as http:
            assert http.get("/api/v1/status").status_code == 200
            assert http.get("/api/v1/jobs/nosuch").status_code == 404
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{srv.url}/api/v1/status").status_code == 401

        def scraped() -> str:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            return text if 'code="401"' in text else ""

        text = wait_until(scraped, 30, "the server's metrics", tolerate=(httpx.HTTPError,))
        assert ('qforge_http_requests_total{code="200",method="GET",route="/api/v1/status"} '
                '1.0') in text
        assert ('qforge_http_requests_total{code="404",method="GET",'
                'route="/api/v1/jobs/{job_id}"} 1.0') in text
        assert 'qforge_http_request_duration_seconds_bucket{le="0.005",method="GET",' in text
