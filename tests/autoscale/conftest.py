"""Fixtures of the autoscaling tests: one autoscaling cluster per session (tests/kube
autoscale mode: control plane, Karpenter's KWOK provider, kwok; no runner node at the
start), one namespace + job store + out-of-cluster controller(s) per test."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import (
    Results,
    Site,
    api_client,
    diagnostics_section,
    namespace_prefix,
)
from tests.kube.autoscale import AutoscaleCluster, AutoscaleOptions
from tests.kube.controlplane import default_run_root
from tests.kube.fixtures import (
    kube_tools,
    reap_orphans,
    session_failed,
    teardown_on_sigterm,
)
from tests.kube.tools import KubeToolsError, Tools

__all__ = ["kube_tools"]

pytestmark = pytest.mark.cluster

if shutil.which("xtb") is None:  # pragma: no cover - `make setup` installs Debian's xtb
    pytest.fail("Debian's xtb is not installed (make setup)", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries the controllers' logs and the namespace's state,
    plus Karpenter's nodes and claims."""
    report = yield
    diagnostics_section(item, report, lambda site: "\n===== nodes\n" + site.cluster.kubectl(
        "get", "nodes,nodeclaims", "-o", "wide", check=False).stdout)
    return report


@pytest.fixture(scope="session")
def autoscale_cluster(kube_tools: Tools, request: pytest.FixtureRequest) -> Iterator[
        AutoscaleCluster]:
    """The session's autoscaling cluster (QFORGE_KUBE_REUSE=<name>: one started by hand
    with `make autoscale-up`)."""
    reuse = os.environ.get("QFORGE_KUBE_REUSE", "")
    teardown_on_sigterm()
    reap_orphans(default_run_root(), kube_tools)
    name = reuse or re.sub(r"[^a-z0-9-]", "-", f"pytest-{os.getpid()}-autoscale")
    try:
        cluster = AutoscaleCluster(AutoscaleOptions(name=name), kube_tools)
        cluster.start()
    except KubeToolsError as exc:
        pytest.fail(f"the autoscaling cluster did not start: {exc}", pytrace=False)
    if reuse and not cluster.reused:
        cluster.stop(keep_logs=True)
        pytest.fail(f"QFORGE_KUBE_REUSE={reuse}: no healthy autoscaling cluster of that "
                    "name", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop(keep_logs=session_failed(request))


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return Results(tmp_path_factory.mktemp("reference-xtb"))


@pytest.fixture(scope="session")
def kube(autoscale_cluster: AutoscaleCluster) -> Any:
    return api_client(autoscale_cluster)


@pytest.fixture
def site(autoscale_cluster: AutoscaleCluster, tmp_path: Path, results: Results,
         request: pytest.FixtureRequest) -> Iterator[Site]:
    """A namespace (PodSecurity `restricted`) and its job store; teardown stops every
    controller the test started (by PID)."""
    site = Site.create(autoscale_cluster, tmp_path, results,
                       namespace_prefix(request.node.name))
    yield site
    for ctl in site.controllers:
        ctl.stop(timeout=5)  # teardown only: see tests/cluster/conftest.py's site
    site.delete()
