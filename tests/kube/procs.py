"""Daemons started by the test cluster: logs per process, bounded waits, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests import waiting

from .tools import KubeToolsError

PORT_RANGE_ENV = "QFORGE_TEST_PORTS"
_handed_out: set[int] = set()


def port_range() -> range | None:
    """``QFORGE_TEST_PORTS=<lo>-<hi>``: this test session's own ports (tools/ci/tiers.py
    gives each tier run side by side a range of its own, below the kernel's ephemeral
    range, so neither another tier nor an outgoing connection takes a port between its
    pick and its daemon's bind). Unset: the OS picks."""
    spec = os.environ.get(PORT_RANGE_ENV, "")
    if not spec:
        return None
    lo, _, hi = spec.partition("-")
    if not (lo.isdigit() and hi.isdigit() and 1024 <= int(lo) < int(hi) < 65536):
        raise KubeToolsError(f"{PORT_RANGE_ENV}={spec!r}: expected <lo>-<hi>, 1024 <= lo < hi")
    return range(int(lo), int(hi) + 1)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now: from this session's range when one is set
    (never the same port twice in a process), else the OS picks it."""
    ports = port_range()
    if ports is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for port in ports:
        if port not in _handed_out and _bindable(host, port):
            _handed_out.add(port)
            return port
    raise KubeToolsError(f"no free port left in {PORT_RANGE_ENV}={ports.start}-{ports.stop - 1}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(host))
    return sorted(ports)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    | " + line[:300] for line in text[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Daemon:
    name: str
    argv: list[str]
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    # how it was started (Supervisor.start), so that restart() starts it the same way
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        # attached from a state file: the PID must still run the same binary
        cmd = pid_cmdline(self.pid)
        return pid_alive(self.pid) and bool(cmd) and cmd[0] == self.argv[0]

    def describe_death(self) -> str:
        code = self.popen.poll() if self.popen is not None else None
        return f"{self.name} (pid {self.pid}) exited with code {code}; log {self.log}:\n" + tail(
            self.log
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM its process group (it leads one), then SIGKILL after ``timeout``."""
        if not self.alive():
            if self.popen is not None:
                self.popen.wait(timeout=1)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.1)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.1)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=2)
        # children it left in its group (e.g. containerd shims) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class Supervisor:
    """Starts daemons in their own sessions with a log file each; stops them in reverse."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.daemons: list[Daemon] = []

    def start(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Daemon:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        args = [str(a) for a in argv]
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(args)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        daemon = Daemon(name, args, popen.pid, log, popen, env, cwd)
        self.daemons.append(daemon)
        return daemon

    def restart(self, name: str, stop_timeout: float = 15.0) -> Daemon:
        """Stop the daemon called ``name`` by its PID (SIGTERM, SIGKILL after
        ``stop_timeout``) and start it again with the same arguments, environment and
        working directory (so the same data dir and ports). Waiting until it is healthy
        again is the caller's (it knows how to ask). Returns the new Daemon."""
        index = next((i for i, d in enumerate(self.daemons) if d.name == name), None)
        if index is None:
            raise KubeToolsError(f"no daemon {name!r} to restart")
        old = self.daemons.pop(index)
        old.stop(timeout=stop_timeout)
        new = self.start(name, old.argv, env=old.env, cwd=old.cwd)
        self.daemons.remove(new)
        self.daemons.insert(index, new)  # stop_all() keeps stopping in reverse start order
        return new

    def check(self) -> None:
        for d in self.daemons:
            if not d.alive():
                raise KubeToolsError(d.describe_death())

    def stop_all(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        self.daemons.clear()


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    supervisor: Supervisor | None = None,
    interval: float = 0.25,
) -> None:
    """tests.waiting.wait_until in the kube tier's terms: fail as soon as a daemon of
    ``supervisor`` dies, count a probe that raises (a service not up yet) as "not yet",
    and raise KubeToolsError at the bound."""
    waiting.wait_until(
        predicate,
        timeout,
        what,
        interval=interval,
        check=supervisor.check if supervisor is not None else None,
        tolerate=(Exception,),
        error=KubeToolsError,
    )
