"""End-to-end fixtures: a real cluster, both images, `helm install qforge charts/qforge`.

Cluster-agnostic: the tests talk to the cluster only through a kubeconfig, kubectl and
helm. What differs between clusters is how the cluster comes to exist and how the images
reach its nodes, chosen by QFORGE_E2E_LOAD (or --e2e-load):

  node   (default) start tests.kube's NodeCluster on this machine (control plane,
         containerd, kubelet, kube-proxy, CNI), build both images from the repo's
         Dockerfiles with its docker, import them into its containerd. Torn down at the end.
  kind   an existing cluster (QFORGE_E2E_KUBECONFIG or --e2e-kubeconfig, else KUBECONFIG)
         whose nodes already hold the images (`kind load docker-image`); kubectl and helm
         from PATH.

Other settings (environment):
  QFORGE_E2E_RUNNER_IMAGE / QFORGE_E2E_CONTROLLER_IMAGE   image refs (default
      qforge-runner:e2e, qforge-controller:e2e)
  QFORGE_E2E_STORAGE   hostpath: the tests create a hostPath PersistentVolume bound to the
      chart's claim (persistence.storageClass "-"); default: the cluster's default
      StorageClass (kind's local-path). Default: hostpath in node mode, default otherwise.
  QFORGE_E2E_WAIT_NODE  seconds to wait for another suite's real node on this machine to
      go away (one node per machine; default 0: fail at once)
  QFORGE_E2E_ARTIFACTS  where a failing test's kubectl dumps go (default
      /tmp/qforge-e2e-artifacts)

The chart is installed once per session into namespace qforge-e2e, which enforces Pod
Security "restricted"; only image names and storage settings differ from the defaults.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kube.controlplane import ClusterOptions, ControlPlane
from tests.kube.node import NodeCluster, node_options
from tests.kube.tools import KubeToolsError, Tools, find_tools
from tests.kube.volumes import node_volume
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "qforge-e2e"
RELEASE = "qforge"
DEPLOY = "qforge"  # the chart's full name for release "qforge"
PVC = "qforge-jobs"  # the chart's claim for release "qforge"
PV = "qforge-e2e-store"
MOUNT = "/jobs"
RUNNER_SELECTOR = "app.kubernetes.io/name=qforge,app.kubernetes.io/component=runner"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qforge-e2e")
    group.addoption("--e2e-load", default=None, help="node (default) | kind")
    group.addoption("--e2e-kubeconfig", default=None, help="kubeconfig of an existing cluster")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class E2EError(RuntimeError):
    pass


class KindCluster(ControlPlane):
    """An existing cluster (kind): tests.kube's ControlPlane for its kubectl, apply, helm
    and env, pointed at the cluster's kubeconfig with kubectl and helm from PATH. It is
    never started or stopped here."""

    mode = "kind"

    def __init__(self, kubeconfig: Path, kubectl: str, helm: str) -> None:
        super().__init__(
            ClusterOptions(name="e2e-kind"),
            Tools({"kubectl": Path(kubectl), "helm": Path(helm)}),
        )
        self.kubeconfig = kubeconfig


# The cluster the tests talk to: a NodeCluster (node mode) or a KindCluster.
Kube = ControlPlane


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _setting(config: pytest.Config, option: str, env: str, default: str | None) -> str | None:
    value = config.getoption(option)
    return value or os.environ.get(env) or default


def images() -> tuple[str, str]:
    return (
        os.environ.get("QFORGE_E2E_RUNNER_IMAGE", "qforge-runner:e2e"),
        os.environ.get("QFORGE_E2E_CONTROLLER_IMAGE", "qforge-controller:e2e"),
    )


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    mode = _setting(request.config, "--e2e-load", "QFORGE_E2E_LOAD", "node")
    if mode == "kind":
        kubeconfig = _setting(
            request.config,
            "--e2e-kubeconfig",
            "QFORGE_E2E_KUBECONFIG",
            os.environ.get("KUBECONFIG"),
        ) or str(Path.home() / ".kube" / "config")
        kubectl, helm = shutil.which("kubectl"), shutil.which("helm")
        if not kubectl or not helm:
            pytest.fail("QFORGE_E2E_LOAD=kind needs kubectl and helm on PATH", pytrace=False)
        yield KindCluster(Path(kubeconfig), kubectl, helm)
        return
    if mode != "node":
        pytest.fail(f"QFORGE_E2E_LOAD={mode!r}: expected node or kind", pytrace=False)

    from tests.kube.images import dockerfile_base_tags

    try:
        tools = find_tools()
    except KubeToolsError as exc:
        pytest.fail(str(exc), pytrace=False)
    from .images import E2EDocker, add_site_ca

    cluster = NodeCluster(node_options("e2e"), tools)
    cluster.docker = E2EDocker(cluster.log_dir)  # our own dockerd, see images.py
    cluster.docker.supervisor = cluster.supervisor  # so the node's teardown stops it
    # `timeout make e2e` (SIGTERM) still tears the node down: finally blocks run
    signal.signal(signal.SIGTERM, _raise_interrupt)
    t0 = time.monotonic()
    wait_node = float(os.environ.get("QFORGE_E2E_WAIT_NODE", "0"))
    try:
        # one real node per machine: wait for another suite's to go, if asked
        cluster.start_when_free(wait_node, interval=10)
        print(f"\n   e2e: node cluster up in {time.monotonic() - t0:.0f}s", flush=True)
        runner, controller = images()
        t1 = time.monotonic()
        add_site_ca(cluster.docker, dockerfile_base_tags(), cluster.log_dir / "images.log")
        cluster.build_image(REPO, runner, dockerfile=REPO / "Dockerfile.runner")
        cluster.build_image(REPO, controller, dockerfile=REPO / "Dockerfile.controller")
        print(f"   e2e: images built and loaded in {time.monotonic() - t1:.0f}s", flush=True)
    except BaseException as exc:
        cluster.stop(keep_logs=True)
        if isinstance(exc, KubeToolsError):
            pytest.fail(f"the e2e node cluster did not come up: {exc}", pytrace=False)
        raise
    try:
        yield cluster
    finally:
        failed = request.session.testsfailed > 0
        cluster.stop(keep_logs=failed)
        if failed:
            print(f"\n   e2e: node cluster logs kept in {cluster.log_dir}", flush=True)


# --------------------------------------------------------------------------- the release


@dataclass
class Release:
    kube: Kube
    namespace: str = NAMESPACE
    deploy: str = DEPLOY
    runner_image: str = ""
    controller_image: str = ""
    host_store: Path | None = None  # the store's folder on this machine (node mode)
    installed: bool = True

    def k(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("-n", self.namespace, *args, **kw)

    def kj(self, *args: str) -> Any:
        return self.kube.kubectl_json("-n", self.namespace, *args)

    def qforge(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl exec [-i] deploy/qforge -- qforge ...`, as README documents."""
        flags = ["-i"] if input is not None else []
        return self.k(
            "exec",
            *flags,
            f"deploy/{self.deploy}",
            "--",
            "qforge",
            *args,
            input=input,
            check=check,
            timeout=timeout,
        )

    def submit(self, xyz: str, *opts: str) -> str:
        out = self.qforge("submit", "-", "--json", "--force", *opts, input=xyz).stdout
        return str(json.loads(out)["job_id"])

    def submit_when_possible(self, xyz: str, *opts: str, timeout: float = 120) -> str:
        """Submit, retrying while the controller's container is being replaced."""

        def attempt() -> str | None:
            proc = self.qforge("submit", "-", "--json", "--force", *opts, input=xyz,
                               check=False)
            return str(json.loads(proc.stdout)["job_id"]) if proc.returncode == 0 else None

        return str(wait_until(attempt, timeout, "a submit through kubectl exec", interval=3))

    def show_all(self) -> list[dict[str, Any]]:
        return list(json.loads(self.qforge("list", "--json").stdout))

    def show(self, job_id: str) -> dict[str, Any]:
        return dict(json.loads(self.qforge("show", job_id, "--json").stdout))

    def metadata(self, job_id: str) -> dict[str, Any]:
        text = self.k(
            "exec", f"deploy/{self.deploy}", "--", "cat", f"{MOUNT}/{job_id}/metadata.json"
        ).stdout
        return dict(json.loads(text))

    def wait_terminal(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            proc = self.qforge("show", job_id, "--json", check=False)
            if proc.returncode != 0:
                return None  # e.g. the controller pod is being replaced
            record = dict(json.loads(proc.stdout))
            return record if record["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

        return dict(wait_until(probe, timeout, f"job {job_id} to finish", interval=2))

    def runner_jobs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        sel = RUNNER_SELECTOR + (f",qforge.io/job-id={job_id}" if job_id else "")
        return list(self.kj("get", "jobs", "-l", sel)["items"])

    def controller_pod(self) -> dict[str, Any]:
        pods = [
            p
            for p in self.kj("get", "pods", "-l", "app.kubernetes.io/component=controller")["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]
        if not pods:  # the selector labels of the chart, whatever the component label
            pods = [
                p
                for p in self.kj("get", "pods", "-l", "app.kubernetes.io/instance=qforge")["items"]
                if p["metadata"]["name"].startswith(self.deploy + "-")
                and not p["metadata"].get("deletionTimestamp")
            ]
        if len(pods) != 1:
            raise E2EError(
                f"expected one controller pod, found {[p['metadata']['name'] for p in pods]}"
            )
        return dict(pods[0])


def freeze_container(kube: Kube, pod: dict[str, Any], sig: int) -> int:
    """Signal a pod's main process from its node (a container cannot SIGSTOP its own
    PID 1): in node mode through this machine's containerd, on kind inside the node's
    container (crictl). Returns the host pid."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[-1]
    if isinstance(kube, NodeCluster):
        for line in kube.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                pid = int(parts[1])
                os.kill(pid, sig)
                return pid
        raise E2EError(f"container {cid} not found in containerd's tasks")
    node = pod["spec"]["nodeName"]
    out = subprocess.run(
        [
            "docker",
            "exec",
            node,
            "crictl",
            "inspect",
            "--output",
            "go-template",
            "--template",
            "{{.info.pid}}",
            cid,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    pid = int(out)
    subprocess.run(
        ["docker", "exec", node, "kill", f"-{int(sig)}", str(pid)], check=True, timeout=60
    )
    return pid


def _pod_security_labels() -> dict[str, str]:
    return {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


@pytest.fixture(scope="session")
def release(kube: Kube) -> Iterator[Release]:
    runner, controller = images()
    storage = os.environ.get("QFORGE_E2E_STORAGE") or (
        "hostpath" if kube.mode == "node" else "default"
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": _pod_security_labels()},
        }
    )
    rel = Release(kube, runner_image=runner, controller_image=controller)
    set_args: list[str] = []
    for key, ref in (("runner", runner), ("controller", controller)):
        repo, _, tag = ref.rpartition(":")
        set_args += ["--set", f"{key}.image.repository={repo}", "--set", f"{key}.image.tag={tag}"]
    # a "Completed" Event on each success (off by default: failures only), which
    # test_kubectl_inspection_as_documented reads with `kubectl describe job`
    set_args += ["--set", "kubeApi.successEvents=true"]
    if storage == "hostpath":
        if not isinstance(kube, NodeCluster):
            raise E2EError(
                "QFORGE_E2E_STORAGE=hostpath needs the node mode (a folder on this machine)"
            )
        store = kube.run_dir / "job-store"
        store.mkdir(parents=True, exist_ok=True)
        os.chown(store, 10001, 10001)
        store.chmod(0o2775)
        rel.host_store = store
        kube.apply(node_volume(PV, store, kube.node_name, claim=(NAMESPACE, PVC),
                               labels={"app.kubernetes.io/part-of": "qforge-e2e"}))
        set_args += ["--set", "persistence.storageClass=-"]
    try:
        t0 = time.monotonic()
        kube.helm(
            "install",
            RELEASE,
            str(REPO / "charts" / "qforge"),
            "-n",
            NAMESPACE,
            *set_args,
            "--wait",
            "--timeout",
            "5m",
            timeout=420,
        )
        kube.kubectl(
            "-n", NAMESPACE, "rollout", "status", f"deploy/{DEPLOY}", "--timeout=180s", timeout=200
        )
        print(f"\n   e2e: helm install --wait took {time.monotonic() - t0:.0f}s", flush=True)
        yield rel
    finally:
        if rel.installed:
            kube.helm(
                "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m", check=False
            )
        kube.kubectl(
            "delete",
            "namespace",
            NAMESPACE,
            "--wait=true",
            "--timeout=120s",
            check=False,
            timeout=180,
        )
        if storage == "hostpath":
            kube.kubectl("delete", "pv", PV, "--wait=false", check=False)


# --------------------------------------------------------------------------- dumps on failure


def _artifacts_dir(name: str) -> Path:
    root = Path(os.environ.get("QFORGE_E2E_ARTIFACTS", "/tmp/qforge-e2e-artifacts"))
    d = root / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    d.mkdir(parents=True, exist_ok=True)
    return d


def dump_state(kube: Kube, name: str) -> Path:
    """kubectl get/describe/logs of the namespace and every job's metadata.json."""
    out = _artifacts_dir(name)

    def save(fname: str, *args: str) -> None:
        proc = kube.kubectl(*args, check=False, timeout=60)
        (out / fname).write_text(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")

    ns = ["-n", NAMESPACE]
    save("get.txt", *ns, "get", "all,jobs,pvc,events", "-o", "wide")
    save("get-pv-nodes.txt", "get", "pv,nodes", "-o", "wide")
    save("describe-jobs.txt", *ns, "describe", "jobs")
    save("describe-pods.txt", *ns, "describe", "pods")
    save("controller.log", *ns, "logs", f"deploy/{DEPLOY}", "--tail=2000")
    save("controller-previous.log", *ns, "logs", f"deploy/{DEPLOY}", "--previous", "--tail=2000")
    pods = kube.kubectl(
        "get", "pods", *ns, "-l", RUNNER_SELECTOR, "-o", "name", check=False
    ).stdout.split()
    for pod in pods[:40]:
        save(f"runner-{pod.split('/')[-1]}.log", *ns, "logs", pod, "--tail=300")
    save(
        "metadata.txt",
        *ns,
        "exec",
        f"deploy/{DEPLOY}",
        "--",
        "sh",
        "-c",
        f'for f in {MOUNT}/*/metadata.json; do echo "== $f"; cat "$f"; echo; done',
    )
    return out


@pytest.fixture(autouse=True)
def _dump_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed or "release" not in request.fixturenames:
        return
    kube = request.getfixturevalue("kube")
    path = dump_state(kube, request.node.nodeid)
    print(f"\n   e2e: cluster state of the failure dumped to {path}", flush=True)
