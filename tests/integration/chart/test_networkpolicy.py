"""The chart's optional NetworkPolicy (runner.networkPolicy.enabled, off by default):
rendered and linted by the real helm. It denies runner pods every ingress and egress
(xtb needs no network) and selects exactly the pods of the runner Jobs the controller
builds, never the controller. Applied to the real API server in tests/cluster/test_rbac.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qforge.k8s import naming
from qforge.k8s.manifests import build_job_manifest
from qforge.settings import Settings
from qforge_runner.molecule import parse_molecule
from qforge_runner.spec import JobSpec
from tests.integration.chart.test_chart import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    Manifest,
    _run,
    _template,
    helm,
    one,
    render,
)
from tests.molecules import WATER_EXPERIMENTAL as WATER

__all__ = ["helm"]

ON: dict[str, Any] = {"runner": {"networkPolicy": {"enabled": True}}}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_no_network_policy_by_default(helm: str) -> None:
    assert [d for d in render(helm) if d["kind"] == "NetworkPolicy"] == []


def test_network_policy_denies_runner_pods_all_traffic(helm: str, tmp_path: Path) -> None:
    docs: list[Manifest] = render(helm, values=ON, tmp=tmp_path)
    policy = one(docs, "NetworkPolicy")
    assert policy["metadata"]["name"] == "qforge-runner"
    assert policy["metadata"]["namespace"] == NAMESPACE
    spec = policy["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    # both types listed with no rule at all: nothing in, nothing out (DNS included)
    assert spec["ingress"] == [] and spec["egress"] == []
    selector = spec["podSelector"]["matchLabels"]
    assert selector == dict(naming.RUNNER_SELECTOR)

    # it selects the pod of a runner Job as the controller builds it ...
    job = build_job_manifest("water_1", JobSpec(molecule=parse_molecule(WATER)),
                             Settings(namespace=NAMESPACE))
    assert _selects(selector, job["spec"]["template"]["metadata"]["labels"])
    # ... and not the controller (it must reach the API server)
    deploy = one(docs, "Deployment", component="controller")
    controller = deploy["spec"]["template"]["metadata"]["labels"]
    assert not _selects(selector, controller)


def test_lint_strict_with_the_network_policy(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "on.yaml"
    values.write_text("runner:\n  networkPolicy:\n    enabled: true\n")
    result = _run(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                  "--kube-version", KUBE_VERSION, "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_rejects_a_network_policy_typo(helm: str, tmp_path: Path) -> None:
    result = _template(helm, values={"runner": {"networkPolicy": {"enable": True}}},
                       tmp=tmp_path)
    assert result.returncode != 0
    assert "enable" in result.stderr
    result = _template(helm, values={"runner": {"networkPolicy": {"enabled": "yes"}}},
                       tmp=tmp_path)
    assert result.returncode != 0
    assert "enabled" in result.stderr
