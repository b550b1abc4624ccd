"""Control-plane mode: the real API server, controllers and scheduler, with kwok nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.kube import ClusterOptions, ControlPlane, KubeToolsError, Tools
from tests.kube.procs import pid_alive, port_open
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CHART = Path(__file__).with_name("charts") / "tiny"


def job(
    name: str,
    *,
    deadline: int | None = None,
    annotations: dict[str, str] | None = None,
    image: str = "debian:bookworm-slim",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": image, "command": ["true"]}],
            },
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def job_condition(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    """The Job's terminal condition (Complete or Failed) once the Job controller set it."""
    data = cp.kubectl_json("get", "job", name, "-n", ns)
    for cond in data.get("status", {}).get("conditions", []):
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def wait_job(cp: ControlPlane, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    try:
        return wait_until(lambda: job_condition(cp, ns, name), timeout,
                          f"job {ns}/{name} to finish", interval=0.5)
    except AssertionError as exc:
        pods = cp.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        raise AssertionError(f"{exc}; pods:\n{pods}") from None


def test_versions_are_real(kube_tools: Tools) -> None:
    import subprocess

    from tests.kube import versions

    pins = versions()
    out = subprocess.run(
        [kube_tools["kube-apiserver"], "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"Kubernetes {pins['kubernetes']}"
    etcd = subprocess.run(
        [kube_tools["etcd"], "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"etcd Version: {pins['etcd'].lstrip('v')}" in etcd


def test_server_version_and_nodes(control_plane: ControlPlane) -> None:
    from tests.kube import versions

    info = control_plane.kubectl_json("version")
    assert info["serverVersion"]["gitVersion"] == versions()["kubernetes"]
    nodes = control_plane.kubectl_json("get", "nodes")["items"]
    assert len(nodes) == 2
    for node in nodes:
        assert node["status"]["allocatable"]["cpu"] == "4"
        assert node["status"]["allocatable"]["memory"] == "8Gi"


def test_job_completes_on_kwok_node(control_plane: ControlPlane) -> None:
    ns = control_plane.namespace("infra-job-ok")
    control_plane.apply(job("hello"), namespace=ns)
    cond = wait_job(control_plane, ns, "hello")
    assert cond["type"] == "Complete", cond
    pod = control_plane.kubectl_json("get", "pods", "-n", ns, "-l", "job-name=hello")["items"][0]
    assert pod["spec"]["nodeName"].startswith("kwok-node-")  # placed by the real scheduler
    assert pod["status"]["phase"] == "Succeeded"


def test_job_deadline_exceeded(control_plane: ControlPlane) -> None:
    ns = control_plane.namespace("infra-job-deadline")
    control_plane.apply(
        job("slow", deadline=3, annotations={"kwok.qforge.io/run-for": "300s"}), namespace=ns
    )
    cond = wait_job(control_plane, ns, "slow", timeout=60)
    assert cond["type"] == "Failed", cond
    assert cond["reason"] == "DeadlineExceeded", cond


def test_job_failed_pod_reason_is_visible(control_plane: ControlPlane) -> None:
    ns = control_plane.namespace("infra-job-fail")
    control_plane.apply(
        job(
            "oom",
            annotations={"kwok.qforge.io/exit-code": "137", "kwok.qforge.io/reason": "OOMKilled"},
        ),
        namespace=ns,
    )
    cond = wait_job(control_plane, ns, "oom")
    assert cond["type"] == "Failed", cond
    pod = control_plane.kubectl_json("get", "pods", "-n", ns, "-l", "job-name=oom")["items"][0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137


RESTRICTED_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "compliant"},
    "spec": {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": "debian:bookworm-slim",
                "command": ["sleep", "1"],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    },
}


def test_pod_security_restricted(control_plane: ControlPlane) -> None:
    ns = control_plane.namespace(
        "infra-psa", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "debian:bookworm-slim",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    proc = control_plane.kubectl(
        "apply", "-n", ns, "-f", "-", input=json.dumps(privileged), check=False
    )
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr and "restricted" in proc.stderr, proc.stderr
    control_plane.apply(RESTRICTED_POD, namespace=ns)
    assert control_plane.kubectl_json("get", "pod", "compliant", "-n", ns)["metadata"]["name"]


def test_rbac_namespaced_role(control_plane: ControlPlane) -> None:
    own = control_plane.namespace("infra-rbac-own")
    other = control_plane.namespace("infra-rbac-other")
    control_plane.kubectl("create", "serviceaccount", "launcher", "-n", own)
    control_plane.kubectl(
        "create",
        "role",
        "job-launcher",
        "-n",
        own,
        "--verb=create,get,list",
        "--resource=jobs.batch",
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "job-launcher",
        "-n",
        own,
        "--role=job-launcher",
        f"--serviceaccount={own}:launcher",
    )
    sa = f"system:serviceaccount:{own}:launcher"

    def can_i(ns: str) -> str:
        proc = control_plane.kubectl(
            "auth", "can-i", "create", "jobs.batch", "-n", ns, f"--as={sa}", check=False
        )
        return proc.stdout.strip()

    assert can_i(own) == "yes"
    assert can_i(other) == "no"

    # a real create with the service account's own token (TokenRequest, signed by the
    # API server's service-account key), not impersonation
    token = control_plane.kubectl("create", "token", "launcher", "-n", own).stdout.strip()
    ca = control_plane.run_dir / "pki" / "ca.crt"
    as_sa = [
        "--kubeconfig",
        "/dev/null",
        "--server",
        control_plane.server,
        "--certificate-authority",
        str(ca),
        "--token",
        token,
    ]
    manifest = json.dumps(job("by-launcher"))
    ok = control_plane.kubectl(*as_sa, "create", "-n", own, "-f", "-", input=manifest, check=False)
    assert ok.returncode == 0, ok.stderr
    denied = control_plane.kubectl(
        *as_sa, "create", "-n", other, "-f", "-", input=manifest, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr


def test_helm_installs_tiny_chart(control_plane: ControlPlane) -> None:
    ns = control_plane.namespace("infra-helm")
    control_plane.helm(
        "install",
        "tiny",
        str(CHART),
        "-n",
        ns,
        "--set",
        "greeting=hi",
        "--wait",
        "--wait-for-jobs",
        "--timeout",
        "90s",
    )
    releases = json.loads(control_plane.helm("list", "-n", ns, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]
    cm = control_plane.kubectl_json("get", "configmap", "tiny-greeting", "-n", ns)
    assert cm["data"]["greeting"] == "hi"
    assert job_condition(control_plane, ns, "tiny-hello") is not None
    control_plane.helm("uninstall", "tiny", "-n", ns, "--wait", "--timeout", "60s")


def test_second_start_reuses_and_teardown_leaves_nothing(kube_tools: Tools, tmp_path: Path) -> None:
    opts = ClusterOptions(name="twice", run_root=tmp_path, kwok_nodes=1)
    first = ControlPlane(opts, kube_tools).start()
    try:
        pids = [d.pid for d in first.supervisor.daemons]
        second = ControlPlane(opts, kube_tools).start()
        assert second.reused and not second.owned
        assert second.server == first.server
        second.stop()  # not the owner: leaves the cluster running
        assert first.healthy()
        assert all(pid_alive(p) for p in pids)
    finally:
        first.stop()
    assert not any(pid_alive(p) for p in pids)
    assert not any(port_open(p) for p in first.ports.values())
    assert not first.run_dir.exists()


def test_missing_state_teardown_is_harmless(kube_tools: Tools, tmp_path: Path) -> None:
    cp = ControlPlane(ClusterOptions(name="absent", run_root=tmp_path), kube_tools)
    assert not cp.adopt()
    with pytest.raises(KubeToolsError):
        cp.kubectl("get", "nodes", timeout=10)
