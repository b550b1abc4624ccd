"""Fixtures of the cluster tests: the session's real control plane (tests/kube), one
namespace + job store + controller(s) per test, and what to print when a test fails."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import (
    NodeLeases,
    Results,
    Site,
    api_client,
    diagnostics_section,
    namespace_prefix,
)
from tests.kube import ControlPlane
from tests.kube.fixtures import control_plane, kube_tools

__all__ = ["control_plane", "kube_tools"]

pytestmark = pytest.mark.cluster

if shutil.which("xtb") is None:  # pragma: no cover - `make setup` installs Debian's xtb
    pytest.fail("Debian's xtb is not installed (make setup)", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries what a person would look at: the controllers'
    logs, `kubectl get/describe` of its namespace, the job records."""
    report = yield
    diagnostics_section(item, report)
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bare_site: the site fixture makes no claim")


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return Results(tmp_path_factory.mktemp("reference-xtb"))


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Any:
    """A kubernetes-client ApiClient with the cluster's admin credentials."""
    return api_client(control_plane)


@pytest.fixture(scope="session", autouse=True)
def node_leases(control_plane: ControlPlane, kube: Any) -> Iterator[NodeLeases]:
    """Keeps the kwok nodes Ready (see NodeLeases: a workaround for the test cluster)."""
    nodes = [n["metadata"]["name"] for n in control_plane.kubectl_json("get", "nodes")[
        "items"] if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node")]
    with NodeLeases(kube, nodes) as leases:
        yield leases


@pytest.fixture
def site(control_plane: ControlPlane, tmp_path: Path, results: Results,
         request: pytest.FixtureRequest) -> Iterator[Site]:
    """A namespace enforcing PodSecurity `restricted`, its job store on a bound PVC, and
    teardown that stops every controller the test started (by PID)."""
    # @pytest.mark.bare_site: the namespace and the PV only (a chart creates the claim)
    bare = request.node.get_closest_marker("bare_site") is not None
    site = Site.create(control_plane, tmp_path, results, namespace_prefix(request.node.name),
                       claim=not bare)
    yield site
    # Teardown only: nothing is asserted about the stop, so 5 s, then SIGKILL (a
    # controller stopped in seconds once its watches closed properly: docs/testing.md).
    # Tests that check a clean stop call ctl.stop() themselves.
    for ctl in site.controllers:
        ctl.stop(timeout=5)
    site.delete()
