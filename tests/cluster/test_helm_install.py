"""The chart installed with the real helm into the real API server, and its RBAC proven
both ways: `kubectl auth can-i` as the controller's service account, and a controller
process that talks to the API with nothing but that service account's token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from qforge.k8s import events
from tests.cluster.helpers import ROOT, Site, refusals, unique_name
from tests.kube import ControlPlane
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CHART = str(ROOT / "charts" / "qforge")
RELEASE = "qforge"  # contains the chart name: objects are named "qforge", "qforge-jobs"


def _helm_install(site: Site, *args: str) -> None:
    site.cluster.helm("install", RELEASE, CHART, "-n", site.namespace, "--wait",
                      "--timeout", "180s", *args, timeout=240)


def _can_i(site: Site, sa: str, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i` as the service account; "pods/log" is a subresource (kubectl
    would read it as the pod named "log")."""
    resource, _, sub = resource.partition("/")
    proc = site.cluster.kubectl(
        "auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
        "-n", namespace,
        f"--as=system:serviceaccount:{site.namespace}:{sa}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), (proc.stdout, proc.stderr)
    return answer == "yes"


def _sa_kubeconfig(site: Site, sa: str, path: Path) -> Path:
    """A kubeconfig whose only credential is a token of the service account."""
    token = site.kubectl("create", "token", sa, "--duration=1h").stdout.strip()
    admin = json.loads(site.cluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa,
                                              "namespace": site.namespace}}],
        "current-context": sa,
    }))
    return path


def test_helm_lint(control_plane: ControlPlane) -> None:
    proc = control_plane.helm("lint", "--strict", CHART, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.bare_site
def test_default_install_works_and_its_role_is_least_privilege_and_enough(
        site: Site, tmp_path: Path) -> None:
    # the chart's own claim (default size and access mode) binds to the test's volume
    site.bind_store("qforge-jobs", size="10Gi", access="ReadWriteOnce", create_claim=False)
    _helm_install(site)

    # helm --wait saw the controller pod ready (kwok plays it Running); the Deployment's
    # own status follows a moment later
    deploy = wait_until(lambda: (d := site.kubectl_json("get", "deployment", "qforge"))[
        "status"].get("availableReplicas") == 1 and d, 30, "the Deployment available")
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
    pvc = site.kubectl_json("get", "pvc", "qforge-jobs")
    assert pvc["status"]["phase"] == "Bound"
    config = site.kubectl_json("get", "configmap", "qforge")["data"]
    assert config["MAX_CONCURRENT_JOBS"] == "3" and config["PVC_NAME"] == "qforge-jobs"
    assert config["NAMESPACE"] == site.namespace

    sa = "qforge"
    ns = site.namespace
    allowed = [("create", "jobs.batch"), ("delete", "jobs.batch"), ("watch", "jobs.batch"),
               ("list", "jobs.batch"), ("get", "jobs.batch"), ("watch", "pods"),
               ("patch", "jobs.batch"), ("list", "pods"), ("create", "events"),
               ("list", "events"), ("get", "leases.coordination.k8s.io"),
               ("create", "leases.coordination.k8s.io"),
               ("update", "leases.coordination.k8s.io")]
    assert [(v, r) for v, r in allowed if not _can_i(site, sa, v, r, ns)] == []
    denied = [("delete", "pods", ns), ("create", "pods", ns), ("get", "secrets", ns),
              ("list", "secrets", ns), ("update", "jobs.batch", ns),
              ("watch", "events", ns), ("create", "pods/exec", ns),
              ("get", "pods/log", ns), ("patch", "events", ns),
              ("delete", "leases.coordination.k8s.io", ns),
              ("create", "jobs.batch", "default"), ("list", "pods", "default"),
              ("update", "leases.coordination.k8s.io", "kube-system"),
              ("list", "namespaces", ""), ("list", "nodes", "")]
    assert [(v, r, n) for v, r, n in denied if _can_i(site, sa, v, r, n)] == []

    # Enough: a controller whose only credential is that account's token, configured by
    # the chart's ConfigMap, runs a job to COMPLETED (the chart's own controller pod is
    # kwok's fake, so this one is the only controller at work).
    kubeconfig = _sa_kubeconfig(site, sa, tmp_path / "sa.kubeconfig")
    env = {**config, "JOBS_DIR": str(site.jobs_dir), "POLL_INTERVAL": "0.5",
           "KUBECONFIG": str(kubeconfig), "HEALTH_CHECK_INTERVAL": "5",
           "SUCCESS_EVENTS": "true", "JOB_KEEP_SECONDS": "1"}
    ctl = site.controller(**env)
    ctl.wait_leading()
    job_id = site.submit_succeeding()
    record = site.wait_status(job_id, "COMPLETED", 90)
    assert record["result"]["energy"] == pytest.approx(-5.0705, abs=1e-3)
    log = ctl.log_text()
    assert refusals(log) == [], log[-3000:]
    name = record["placement"]["k8s_job"]
    reasons = {e["reason"] for e in site.events_of("Job", name)}
    assert events.REASON_COMPLETED in reasons  # Events posted with the account's rights
    # and the finished Job deleted (after its keep time) with the account's rights
    wait_until(lambda: site.k8s_jobs(job_id) == [], 30, f"Job {name} deleted")


@pytest.mark.bare_site
def test_install_with_a_custom_values_file_and_schema_rejects_typos(
        site: Site, tmp_path: Path) -> None:
    site.bind_store("my-store")
    site.kubectl("create", "serviceaccount", "calc")
    typo = tmp_path / "typo.yaml"
    typo.write_text("maxConcurentJobs: 5\n")
    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text("pollInterval: fast\n")
    for bad, word in ((typo, "maxConcurentJobs"), (wrong_type, "pollInterval")):
        proc = site.cluster.helm("install", unique_name("bad"), CHART, "-n", site.namespace,
                                 "-f", str(bad), check=False)
        assert proc.returncode != 0
        assert "schema" in proc.stderr and word in proc.stderr, proc.stderr
    assert site.cluster.helm("list", "-n", site.namespace, "-q").stdout.strip() == ""

    values: dict[str, Any] = {
        "maxConcurrentJobs": 7,
        "pollInterval": 2,
        "jobTimeout": 600,
        "runner": {"image": {"repository": "calc/runner", "tag": "v9",
                             "pullPolicy": "Never"},
                   "resources": {"cpu": "2", "memory": "3Gi"},
                   "nodeSelector": {"type": "kwok"},
                   "tolerations": [{"key": "chem", "operator": "Exists",
                                    "effect": "NoSchedule"}],
                   "ttlSecondsAfterFinished": 120},
        "controller": {"image": {"repository": "calc/controller", "tag": "v9"},
                       "nodeSelector": {"type": "kwok"}},
        "persistence": {"create": False, "existingClaim": "my-store"},
        "serviceAccount": {"create": False, "name": "calc"},
    }
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(values))
    _helm_install(site, "-f", str(custom))

    config = site.kubectl_json("get", "configmap", "qforge")["data"]
    assert {k: config[k] for k in ("MAX_CONCURRENT_JOBS", "POLL_INTERVAL", "JOB_TIMEOUT",
                                   "RUNNER_IMAGE", "IMAGE_PULL_POLICY", "RUNNER_CPU",
                                   "RUNNER_MEMORY", "PVC_NAME",
                                   "TTL_SECONDS_AFTER_FINISHED")} == {
        "MAX_CONCURRENT_JOBS": "7", "POLL_INTERVAL": "2", "JOB_TIMEOUT": "600",
        "RUNNER_IMAGE": "calc/runner:v9", "IMAGE_PULL_POLICY": "Never", "RUNNER_CPU": "2",
        "RUNNER_MEMORY": "3Gi", "PVC_NAME": "my-store", "TTL_SECONDS_AFTER_FINISHED": "120"}
    assert json.loads(config["NODE_SELECTOR"]) == {"type": "kwok"}
    assert json.loads(config["TOLERATIONS"])[0]["key"] == "chem"
    pod = site.kubectl_json("get", "pods", "-l",
                            "app.kubernetes.io/component=controller")["items"][0]
    assert pod["spec"]["serviceAccountName"] == "calc"
    assert pod["spec"]["containers"][0]["image"] == "calc/controller:v9"
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "my-store"
    wait_until(lambda: site.kubectl_json("get", "deployment", "qforge")["status"].get(
        "availableReplicas") == 1, 30, "the controller Deployment available")
    # no claim of the chart's own when an existing one is named
    claims = [c["metadata"]["name"] for c in site.kubectl_json("get", "pvc")["items"]]
    assert claims == ["my-store"]

    # the values reach the runner Jobs: a controller configured by this ConfigMap
    ctl = site.controller(**{**config, "JOBS_DIR": str(site.jobs_dir), "POLL_INTERVAL": "0.5"})
    job_id = site.submit_succeeding()
    site.wait_status(job_id, "COMPLETED", 90)
    (job,) = site.k8s_jobs(job_id)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "calc/runner:v9"
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"]["limits"]["memory"] == "3Gi"
    # runner.resources.cpu (RUNNER_CPU) for a job that asked for no --cpu
    assert container["resources"]["requests"]["cpu"] == "2"
    assert container["resources"]["limits"]["cpu"] == "2"
    assert {e["name"]: e.get("value") for e in container["env"]}["OMP_NUM_THREADS"] == "2"
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"] == [{"key": "chem", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "my-store"}
    assert job["spec"]["ttlSecondsAfterFinished"] == 120
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert ctl.alive()
