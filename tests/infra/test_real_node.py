"""Real-node mode: pods in real containers (containerd + runc), kubelet and kube-proxy."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube import KubeToolsError, Tools
from tests.kube.fixtures import session_failed, teardown_on_sigterm
from tests.kube.node import NodeCluster, leftovers, node_options
from tests.kube.volumes import node_volume
from tests.waiting import wait_until

pytestmark = pytest.mark.node

BASE = "debian:bookworm-slim"
CURL_IMAGE = "qforge-infra/curl:1"


@pytest.fixture(scope="module")
def node(kube_tools: Tools, request: pytest.FixtureRequest) -> Iterator[NodeCluster]:
    teardown_on_sigterm()
    cluster = NodeCluster(node_options("infra-node"), kube_tools)
    # one real node per machine: wait (bounded) for another suite's node to go
    wait = float(os.environ.get("QFORGE_KUBE_WAIT_NODE", "900"))

    def waiting(why: str) -> None:
        print(f"\n   waiting for the machine's real node: {why}", file=sys.stderr)

    try:
        cluster.start_when_free(wait, interval=15, on_wait=waiting)
    except KubeToolsError as exc:
        pytest.fail(f"the real-node cluster did not start: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop(keep_logs=session_failed(request))
    left = leftovers(cluster.run_dir)
    assert not left, f"left behind after teardown: {left}"


@pytest.fixture(scope="module")
def curl_image(node: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image built here FROM the debootstrap base, with curl (apt inside docker build)."""
    ctx = tmp_path_factory.mktemp("curl-image")
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
        "--no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*\n"
    )
    if not node.docker.image_exists(CURL_IMAGE):
        node.docker.build(ctx, CURL_IMAGE, log=node.log_dir / "images.log")
    node.load_images(CURL_IMAGE)
    return CURL_IMAGE


def pod_status(node: NodeCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(node.kubectl_json("get", "pod", name, "-n", ns).get("status", {}))


def wait_pod_done(node: NodeCluster, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = pod_status(node, ns, name)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    try:
        return dict(wait_until(done, timeout, f"pod {ns}/{name} to finish", interval=1))
    except AssertionError:
        events = node.kubectl("get", "events", "-n", ns, check=False).stdout
        raise AssertionError(
            f"pod {ns}/{name} did not finish: {pod_status(node, ns, name)}\n{events}"
        ) from None


def pod(name: str, image: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def test_node_is_real(node: NodeCluster) -> None:
    nodes = node.kubectl_json("get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.node_name]
    info = nodes[0]["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6")
    from tests.kube import versions

    assert info["kubeletVersion"] == versions()["kubernetes"]


def test_job_runs_in_debootstrap_image_and_logs(node: NodeCluster) -> None:
    ns = node.namespace("node-job")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": BASE,
                            "command": [
                                "sh",
                                "-c",
                                "echo hello from debian $(cat /etc/debian_version)",
                            ],
                        }
                    ],
                }
            },
        },
    }
    node.apply(job, namespace=ns)
    node.kubectl(
        "wait", "--for=condition=Complete", "job/hello", "-n", ns, "--timeout=120s", timeout=130
    )
    logs = node.kubectl("logs", "job/hello", "-n", ns).stdout
    assert logs.startswith("hello from debian 12"), logs


def test_memory_limit_oomkilled(node: NodeCluster) -> None:
    ns = node.namespace("node-oom")
    spec = pod(
        "hog",
        BASE,
        ["sh", "-c", "tail /dev/zero"],
        container={"resources": {"limits": {"memory": "32Mi", "cpu": "500m"}}},
    )
    node.apply(spec, namespace=ns)
    status = wait_pod_done(node, ns, "hog")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    assert terminated["exitCode"] == 137


def test_pod_reaches_api_through_kubernetes_service(node: NodeCluster, curl_image: str) -> None:
    ns = node.namespace("node-svc")
    node.kubectl("create", "serviceaccount", "reader", "-n", ns)
    node.kubectl("create", "role", "pod-reader", "-n", ns, "--verb=get,list", "--resource=pods")
    node.kubectl(
        "create",
        "rolebinding",
        "pod-reader",
        "-n",
        ns,
        "--role=pod-reader",
        f"--serviceaccount={ns}:reader",
    )
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"curl -sS --fail-with-body --cacert {sa}/ca.crt "
        f'-H "Authorization: Bearer $(cat {sa}/token)" '
        '"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/'
        f'{ns}/pods"'
    )
    spec = pod("caller", curl_image, ["sh", "-c", script], serviceAccountName="reader")
    node.apply(spec, namespace=ns)
    status = wait_pod_done(node, ns, "caller")
    logs = node.kubectl("logs", "caller", "-n", ns).stdout
    assert status["phase"] == "Succeeded", logs
    body = json.loads(logs)
    assert body["kind"] == "PodList"
    assert "caller" in [p["metadata"]["name"] for p in body["items"]]
    svc = node.kubectl_json("get", "service", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"


def test_pvc_on_local_volume_is_seen_by_host(node: NodeCluster) -> None:
    ns = node.namespace("node-pvc")
    host_dir = node.run_dir / "volumes" / f"pv-{uuid.uuid4().hex[:8]}"
    host_dir.mkdir(parents=True)
    host_dir.chmod(0o777)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "qforge-local"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        node_volume(f"{ns}-pv", host_dir, node.node_name, size="1Gi",
                    storage_class="qforge-local", local=True),
    ]
    node.apply(objects)
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "qforge-local",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    node.apply(pvc, namespace=ns)
    spec = pod(
        "writer",
        BASE,
        ["sh", "-c", "echo written-by-pod > /data/result.txt"],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    node.apply(spec, namespace=ns)
    status = wait_pod_done(node, ns, "writer")
    assert status["phase"] == "Succeeded", status
    assert node.kubectl_json("get", "pvc", "data", "-n", ns)["status"]["phase"] == "Bound"
    assert (host_dir / "result.txt").read_text() == "written-by-pod\n"
    node.kubectl("delete", "pod", "writer", "-n", ns, "--wait=true", "--timeout=60s", timeout=70)
    node.kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
    node.kubectl("delete", "pv", f"{ns}-pv", "--wait=false")


def test_failing_liveness_probe_restarts_container(node: NodeCluster) -> None:
    ns = node.namespace("node-probe")
    spec = pod(
        "flaky",
        BASE,
        ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600"],
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        container={
            "livenessProbe": {
                "exec": {"command": ["cat", "/tmp/healthy"]},
                "initialDelaySeconds": 1,
                "periodSeconds": 1,
                "failureThreshold": 2,
            }
        },
    )
    node.apply(spec, namespace=ns)

    def restarted() -> bool:
        statuses = pod_status(node, ns, "flaky").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0)) >= 1

    wait_until(restarted, 90, "the kubelet to restart the container", interval=1)
    events = node.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    reasons = {e.get("reason") for e in json.loads(events)["items"]}
    assert "Unhealthy" in reasons, reasons


def test_second_node_cluster_is_refused(node: NodeCluster, kube_tools: Tools) -> None:
    other = NodeCluster(node_options("infra-node-other"), kube_tools)
    with pytest.raises(KubeToolsError, match="already runs on this machine"):
        other.start()
    again = NodeCluster(node_options("infra-node"), kube_tools).start()
    assert again.reused and again.server == node.server
    assert node.healthy()


def test_run_dir_is_where_expected(node: NodeCluster) -> None:
    assert node.kubeconfig.is_file()
    assert Path(node.containerd_socket).exists()
