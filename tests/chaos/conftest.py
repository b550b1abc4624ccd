"""The chaos tier: the cluster tests' fixtures (tests/cluster/conftest.py) on a control
plane of its own, since this tier restarts kube-apiserver and etcd under it
(`make test-chaos` runs it in a pytest session of its own)."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import (
    control_plane,
    kube,
    kube_tools,
    node_leases,
    pytest_configure,
    pytest_runtest_makereport,
    results,
    site,
)

__all__ = ["control_plane", "kube", "kube_tools", "node_leases", "pytest_configure",
           "pytest_runtest_makereport", "results", "site"]

pytestmark = pytest.mark.cluster
