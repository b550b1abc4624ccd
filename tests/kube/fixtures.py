"""pytest fixtures for the real test clusters.

Use from a conftest.py::

    from tests.kube.fixtures import control_plane, kube_tools  # noqa: F401

``control_plane`` (session scope) starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok with two fake nodes once per test session and tears them down at
its end; the logs are kept (and their folder printed) when a test of the session failed.

Environment:
  QFORGE_KUBE_REUSE=<name>   use an already running by-hand cluster of that name
                             (``make cluster-up``) instead of starting one
  QFORGE_KUBE_RUN_DIR        where clusters live (default /tmp/qforge-kube)
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from .controlplane import ClusterOptions, ControlPlane, default_run_root
from .procs import pid_alive
from .tools import KubeToolsError, Tools, find_tools


def session_failed(request: pytest.FixtureRequest) -> bool:
    return request.session.testsfailed > 0


@pytest.fixture(scope="session")
def kube_tools() -> Tools:
    """Paths of the pinned binaries; fails (not skips) with how to build them when missing."""
    try:
        return find_tools()
    except KubeToolsError as exc:
        pytest.fail(str(exc), pytrace=False)


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def teardown_on_sigterm() -> None:
    """SIGTERM (``timeout``, CI cancelling) ends the session like Ctrl-C: fixtures tear down."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)


def reap_orphans(run_root: Path, tools: Tools) -> None:
    """Stop clusters of test sessions that died without teardown (SIGKILL, OOM, ...)."""
    for lock in run_root.glob(".pytest-*.lock"):
        pid = lock.name.removeprefix(".pytest-").removesuffix(".lock").split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)) and not (run_root / lock.name[1:-5]).exists():
            lock.unlink(missing_ok=True)  # a finished session's lock file
    for state_file in run_root.glob("pytest-*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(int(state.get("owner_pid", 0))):
            continue
        name = state_file.parent.name
        print(f"stopping cluster {name!r} left by a dead test session", file=sys.stderr)
        if state.get("mode") == "node":
            from .node import NodeCluster, node_options

            orphan: ControlPlane = NodeCluster(node_options(name), tools)
        else:
            orphan = ControlPlane(ClusterOptions(name=name, run_root=run_root), tools)
        if orphan.adopt():
            orphan.stop()


def _session_name(prefix: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{os.getpid()}{('-' + worker) if worker else ''}")


@pytest.fixture(scope="session")
def control_plane(kube_tools: Tools, request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A running control plane with kwok nodes, shared by the whole session."""
    reuse = os.environ.get("QFORGE_KUBE_REUSE", "")
    teardown_on_sigterm()
    reap_orphans(default_run_root(), kube_tools)
    options = ClusterOptions(name=reuse or _session_name("pytest"))
    cluster = ControlPlane(options, kube_tools)
    try:
        cluster.start()
    except KubeToolsError as exc:
        pytest.fail(f"the test control plane did not start: {exc}", pytrace=False)
    if reuse and not cluster.reused:
        cluster.stop(keep_logs=True)
        pytest.fail(f"QFORGE_KUBE_REUSE={reuse}: no healthy cluster of that name", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop(keep_logs=session_failed(request))
