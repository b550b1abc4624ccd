"""A real `qforge server` (uvicorn) on loopback over a store of its own, the real command
line talking to it (QFORGE_SERVER, QFORGE_TOKEN), tokens made by `qforge token create`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_qforge(*args: str, env: dict[str, str], stdin: str | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qforge.cli.main", *args], input=stdin,
                          text=True, capture_output=True, env=env, timeout=timeout,
                          check=False)


@dataclass
class Server:
    jobs: Path
    home: Path
    url: str = ""
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("QFORGE_SERVER", "QFORGE_TOKEN", "JOBS_DIR")}
        env["XDG_CONFIG_HOME"] = str(self.home / ".config")  # no profile of the user's
        return env

    def local(self, *args: str, stdin: str | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The command line on the store itself (as its administrator)."""
        return run_qforge("--jobs-dir", str(self.jobs), *args, env=self.base_env(),
                          stdin=stdin, timeout=timeout)

    def remote(self, token: str | None, *args: str, stdin: str | None = None,
               cwd: Path | None = None, timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
        """The command line on a laptop: through the server, with `token`."""
        env = self.base_env()
        env["QFORGE_SERVER"] = self.url
        if token is not None:
            env["QFORGE_TOKEN"] = token
        return subprocess.run([sys.executable, "-m", "qforge.cli.main", *args], input=stdin,
                              text=True, capture_output=True, env=env, timeout=timeout,
                              check=False, cwd=cwd or self.home)

    def token(self, name: str, role: str) -> str:
        """A new token through the real `qforge token create` (its last line)."""
        done = self.local("token", "create", name, "--role", role)
        assert done.returncode == 0, done.stderr
        token = done.stdout.strip().splitlines()[-1]
        self.tokens[name] = token
        return token

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def start(self, *extra: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = self.home / f"server-{port}.log"
        out = open(self.log, "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qforge.cli.main", "--jobs-dir", str(self.jobs),
             "server", "--host", "127.0.0.1", "--port", str(port), *extra],
            env=self.base_env(), stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        wait_until(self._healthy, 60, f"qforge server on {self.url}", interval=0.2,
                   check=self._alive, tolerate=(httpx.TransportError,))

    def _healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the server exited ({self.proc.returncode}):\n"
                                 f"{self.log.read_text() if self.log else ''}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)

    def server_log(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def store_files(self) -> list[str]:
        """Every file of the store but the tokens' (what a refused request must not
        change)."""
        return sorted(str(p.relative_to(self.jobs)) for p in self.jobs.rglob("*")
                      if "tokens" not in p.parts)


@contextmanager
def running_server(home: Path, *extra: str, env: dict[str, str] | None = None,
                   ) -> Iterator[Server]:
    """A server on a new store under `home` (with `env` in its environment), stopped
    after; it must not have logged a traceback."""
    srv = Server(jobs=home / "jobs", home=home)
    srv.jobs.mkdir()
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        srv.start(*extra)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield srv
    finally:
        srv.stop()
    log = srv.server_log()
    assert "Traceback" not in log, f"the server logged a traceback:\n{log}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path) as srv:
        yield srv
