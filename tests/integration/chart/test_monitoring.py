"""The chart's monitoring objects with the real helm: the metrics Service (on by default),
the ServiceMonitor, the PrometheusRule (checked by the real promtool) and the Grafana
dashboard ConfigMap (off by default)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.metrics import DASHBOARD

from .test_chart import (
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

__all__ = ["helm"]  # the fixture

ALL_ON = ("--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,"
                   "metrics.dashboard.enabled=true")
MONITORING = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def all_on(helm: str) -> list[Manifest]:
    return render(helm, *ALL_ON)


def test_only_the_metrics_service_is_on_by_default(helm: str) -> None:
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in MONITORING]
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"] == ["qforge"]
    service = one(docs, "Service", component="controller")
    assert service["metadata"]["name"] == "qforge-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9102, "targetPort": "metrics", "protocol": "TCP"}]
    deploy = one(docs, "Deployment", component="controller")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in container["ports"]
    config = one(docs, "ConfigMap")["data"]
    assert config["METRICS_PORT"] == "9102" and config["LOG_FORMAT"] == "text"


def test_metrics_can_be_turned_off(helm: str) -> None:
    docs = render(helm, "--set", "metrics.enabled=false")
    services = [d for d in docs if d["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["qforge-server"]  # the API only
    assert [p["name"] for s in services for p in s["spec"]["ports"]] == ["http"]
    assert "METRICS_PORT" not in one(docs, "ConfigMap")["data"]
    refused = _template(helm, "--set", "metrics.enabled=false,metrics.serviceMonitor.enabled=true")
    assert refused.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.enabled" in refused.stderr


def test_everything_on_passes_helm_lint_strict(helm: str) -> None:
    result = _run(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                  "--kube-version", KUBE_VERSION, *ALL_ON)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_monitor_scrapes_the_metrics_service(all_on: list[Manifest]) -> None:
    monitor = one(all_on, "ServiceMonitor", component="controller")
    service = one(all_on, "Service", component="controller")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() \
        <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_operator_selector_labels_reach_the_objects(helm: str) -> None:
    docs = render(helm, *ALL_ON, "--set",
                  "metrics.serviceMonitor.labels.release=kps,"
                  "metrics.prometheusRule.labels.release=kps")
    monitoring = [d for d in docs if d["kind"] in MONITORING]
    assert sorted(d["kind"] for d in monitoring) == [
        "PrometheusRule", "ServiceMonitor", "ServiceMonitor"]  # the controller's, the server's
    for doc in monitoring:
        assert doc["metadata"]["labels"]["release"] == "kps"


def test_the_alert_rules_pass_promtool(all_on: list[Manifest], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("Debian's prometheus (promtool) is not installed (make installs it)")
    groups = one(all_on, "PrometheusRule")["spec"]["groups"]
    names = [r["alert"] for g in groups for r in g["rules"]]
    assert names == ["QforgeQueueStalled", "QforgePollerStalled", "QforgeFailureRateHigh",
                     "QforgeRunnersWaiting"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout
    # and a broken expression fails it (the check is not a rubber stamp)
    groups[0]["rules"][0]["expr"] = "sum(qforge_jobs{"
    path.write_text(yaml.safe_dump({"groups": groups}))
    broken = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert broken.returncode != 0


def test_thresholds_reach_the_rules(helm: str) -> None:
    docs = render(helm, "--set", "metrics.prometheusRule.enabled=true,"
                  "metrics.prometheusRule.pollerStalledSeconds=300",
                  "--set-json", "metrics.prometheusRule.failureRatio=0.5")
    rules = {r["alert"]: r for r in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "> 0.5" in rules["QforgeFailureRateHigh"]["expr"]
    assert "> 300" in rules["QforgePollerStalled"]["expr"]


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar(
        all_on: list[Manifest]) -> None:
    (cm,) = [d for d in all_on if d["kind"] == "ConfigMap"
             and d["metadata"]["name"] == "qforge-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["qforge.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in ("Queue depth", "Throughput (jobs per minute)",
                   "Failures by type (per minute)", "Queue wait (submission to start)",
                   "Runner pods by phase", "Why runner pods wait"):
        assert wanted in titles


@pytest.mark.parametrize("setting", [
    "metrics.serviceMonitor.enable=true",            # a typo
    "metrics.prometheusRule.failureRatio=2",          # a ratio above 1
    "metrics.serviceMonitor.interval=soon",           # not a duration
    "metrics.port=0",
    "controller.logFormat=xml",
])
def test_the_schema_rejects_bad_monitoring_values(helm: str, setting: str) -> None:
    result = _template(helm, "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
