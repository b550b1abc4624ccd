"""The autoscaling mode: the control plane, Karpenter's KWOK provider, and kwok making
Karpenter's nodes Ready. No runner node at the start: Karpenter creates them for pending
pods and removes them when they are empty.

What runs (each a process with a log under ``<run_dir>/logs``):

* etcd, kube-apiserver, kube-controller-manager, kube-scheduler (as ``ControlPlane``);
* kwok (the node simulator) managing every node annotated ``kwok.x-k8s.io/node=fake``,
  which is what Karpenter's KWOK provider puts on the nodes it creates; the pod stages of
  tests/kube/kwok-stages.yaml play the runner pods' lives;
* ``karpenter`` (sigs.k8s.io/karpenter/kwok, built by ``make k8s-tools``) out of cluster:
  KUBECONFIG in its environment, leader election off, its metrics and health ports on
  free loopback ports. Its CRDs, a KWOKNodeClass ``default`` and the NodePool ``runners``
  are applied first.

The NodePool (`runner_nodepool`) is a dedicated runner pool: linux/amd64 on-demand
instance types of family c with 4 or 8 vCPU (8 or 16 GiB), label ``qforge.io/pool:
runners``, taint ``qforge.io/runner=true:NoSchedule``; consolidation ``WhenEmpty`` after
``consolidate_after``. Runner pods reach it with `RUNNER_PLACEMENT` (nodeSelector and
toleration, as the chart's values would set them).

Teardown: the NodePool and its NodeClaims are deleted while Karpenter runs, so it removes
its nodes (and their ``karpenter.sh/termination`` finalizers) itself; whatever is left
after a bounded wait has its finalizers stripped before the processes stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .controlplane import KWOK_ANNOTATION, STAGES_FILE, ClusterOptions, ControlPlane
from .pki import PKI
from .procs import free_ports, wait_until
from .tools import KubeToolsError, Tools, cache_root, versions

POOL = "runners"
POOL_LABEL = "qforge.io/pool"
RUNNER_TAINT = "qforge.io/runner"
NODECLASS = "default"
# Every node Karpenter creates carries this label (and the kwok annotation).
NODEPOOL_LABEL = "karpenter.sh/nodepool"
# How the runner pods reach the pool: the controller's NODE_SELECTOR and TOLERATIONS.
RUNNER_PLACEMENT = {
    "NODE_SELECTOR": json.dumps({POOL_LABEL: POOL}),
    "TOLERATIONS": json.dumps([{"key": RUNNER_TAINT, "operator": "Equal", "value": "true",
                                "effect": "NoSchedule"}]),
}
INSTANCE_CPUS = ("4", "8")

CRD_NAMES = (
    "nodepools.karpenter.sh",
    "nodeclaims.karpenter.sh",
    "nodeoverlays.karpenter.sh",
    "kwoknodeclasses.karpenter.kwok.sh",
)


def karpenter_dir() -> Path:
    """<cache>/k8s/karpenter-<version>: bin/karpenter and crds/*.yaml."""
    return cache_root() / "k8s" / f"karpenter-{versions()['karpenter']}"


def find_karpenter() -> tuple[Path, Path]:
    """(the binary, the CRD folder); KubeToolsError naming the make target if missing."""
    folder = karpenter_dir()
    binary, crds = folder / "bin" / "karpenter", folder / "crds"
    if not (folder / ".complete").is_file() or not os.access(binary, os.X_OK) or not (
            crds / "karpenter.sh_nodepools.yaml").is_file():
        raise KubeToolsError(
            f"Karpenter's KWOK provider is not built ({folder}) - run `make k8s-tools` "
            "(or tools/k8s/build.sh karpenter)")
    return binary, crds


def runner_nodepool(consolidate_after: str = "5s", policy: str = "WhenEmpty",
                    cpu_limit: str = "1000", termination_grace: str = "") -> dict[str, Any]:
    """The NodePool for runner pods (see the module docstring). `termination_grace`: the
    nodes' terminationGracePeriod (how long a draining node waits for do-not-disrupt
    pods before it deletes them); none by default (it waits for them)."""
    pool: dict[str, Any] = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": POOL},
        "spec": {
            "template": {
                "metadata": {"labels": {POOL_LABEL: POOL}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                     "name": NODECLASS},
                    "requirements": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In",
                         "values": ["on-demand"]},
                        {"key": "karpenter.kwok.sh/instance-family", "operator": "In",
                         "values": ["c"]},
                        {"key": "karpenter.kwok.sh/instance-cpu", "operator": "In",
                         "values": list(INSTANCE_CPUS)},
                    ],
                    "taints": [{"key": RUNNER_TAINT, "value": "true", "effect": "NoSchedule"}],
                    "expireAfter": "Never",
                },
            },
            "disruption": {"consolidationPolicy": policy,
                           "consolidateAfter": consolidate_after,
                           "budgets": [{"nodes": "100%"}]},
            "limits": {"cpu": cpu_limit},
        },
    }
    if termination_grace:
        pool["spec"]["template"]["spec"]["terminationGracePeriod"] = termination_grace
    return pool


@dataclass
class AutoscaleOptions(ClusterOptions):
    kwok_nodes: int = 0  # fixed kwok nodes besides Karpenter's (the bench's baseline)
    consolidate_after: str = "5s"


class AutoscaleCluster(ControlPlane):
    """A control plane whose runner nodes come from Karpenter (see the module docstring)."""

    mode = "autoscale"

    def __init__(self, options: AutoscaleOptions | None = None,
                 tools: Tools | None = None) -> None:
        super().__init__(options or AutoscaleOptions(), tools)
        self.karpenter_bin, self.crd_dir = find_karpenter()

    @property
    def autoscale_options(self) -> AutoscaleOptions:
        opts = self.options
        return opts if isinstance(opts, AutoscaleOptions) else AutoscaleOptions()

    # ------------------------------------------------------------------ queries
    def karpenter_nodes(self) -> list[dict[str, Any]]:
        """The nodes Karpenter created (label karpenter.sh/nodepool)."""
        items: list[dict[str, Any]] = self.kubectl_json(
            "get", "nodes", "-l", NODEPOOL_LABEL)["items"]
        return items

    def nodeclaims(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl_json("get", "nodeclaims")["items"]
        return items

    def set_nodepool(self, **kw: str) -> None:
        """Re-apply the runner NodePool (e.g. another consolidation policy, a CPU limit);
        what is not given is the cluster's default."""
        kw.setdefault("consolidate_after", self.autoscale_options.consolidate_after)
        self.apply(runner_nodepool(**kw))

    # ------------------------------------------------------------------ lifecycle
    def _start_nodes(self, pki: PKI) -> None:
        sup = self.supervisor
        opts = self.autoscale_options
        sup.start("kwok", [
            self.tools["kwok"], "--kubeconfig", self.kubeconfig, "--config", STAGES_FILE,
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", f"{KWOK_ANNOTATION}=fake",
            "--cidr", "10.0.0.1/16", "--node-ip", "10.0.0.1",
            "--server-address", f"127.0.0.1:{self.ports['kwok']}",
            "--node-lease-duration-seconds", "40",
        ])
        if opts.kwok_nodes > 0:
            nodes = [self._kwok_node(i) for i in range(opts.kwok_nodes)]
            self.apply(nodes)
            wait_until(f"{len(nodes)} kwok nodes Ready",
                       lambda: self._ready_nodes() >= len(nodes), opts.start_timeout, sup)
        self._start_karpenter()

    def _start_karpenter(self) -> None:
        sup = self.supervisor
        timeout = self.options.start_timeout
        files = sorted(self.crd_dir.glob("*.yaml"))
        self.kubectl("apply", "--server-side", *[a for f in files for a in ("-f", str(f))])

        def established() -> bool:
            # (not `kubectl wait`: it fails on a CRD whose status is not written yet)
            items = self.kubectl_json("get", "crd")["items"]
            ok = {c["metadata"]["name"] for c in items
                  if any(k.get("type") == "Established" and k.get("status") == "True"
                         for k in (c.get("status") or {}).get("conditions") or [])}
            return ok >= set(CRD_NAMES)

        wait_until("Karpenter's CRDs Established", established, timeout, sup)
        self.apply({"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
                    "metadata": {"name": NODECLASS}})
        self.apply(runner_nodepool(self.autoscale_options.consolidate_after))
        metrics, health = free_ports(2)
        self.ports.update({"karpenter-metrics": metrics, "karpenter-health": health})
        sup.start("karpenter", [self.karpenter_bin], env={
            "KUBECONFIG": str(self.kubeconfig),
            "DISABLE_LEADER_ELECTION": "true",
            "METRICS_PORT": str(metrics),
            "HEALTH_PROBE_PORT": str(health),
            "LOG_LEVEL": "info",
        })

        def karpenter_ready() -> bool:
            url = f"http://127.0.0.1:{health}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status) == 200

        wait_until("karpenter /readyz", karpenter_ready, timeout, sup)

        def pool_ready() -> bool:
            pool = self.kubectl_json("get", "nodepool", POOL)
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in pool.get("status", {}).get("conditions", []))

        wait_until(f"NodePool {POOL} Ready", pool_ready, timeout, sup)

    def _kwok_node(self, index: int) -> dict[str, Any]:
        """A fixed node shaped like the pool's (label and taint too): the baseline."""
        node = super()._kwok_node(index)
        node["metadata"]["labels"][POOL_LABEL] = POOL
        node["spec"] = {"taints": [{"key": RUNNER_TAINT, "value": "true",
                                    "effect": "NoSchedule"}]}
        return node

    def _before_stop(self) -> None:
        """Karpenter removes its nodes while it still runs; then no finalizer is left."""
        if not self.healthy():
            return
        self.kubectl("delete", "nodepool", "--all", "--wait=false", check=False)
        self.kubectl("delete", "nodeclaims", "--all", "--wait=false", check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                left = self.karpenter_nodes() + self.nodeclaims()
            except KubeToolsError:
                break
            if not left:
                return
            time.sleep(1)
        # Karpenter did not finish: strip the finalizers so nothing waits on them.
        for kind in ("nodes", "nodeclaims"):
            with contextlib.suppress(KubeToolsError):
                names = self.kubectl("get", kind, "-o", "name", check=False).stdout.split()
                for name in names:
                    self.kubectl("patch", name, "--type=merge", "-p",
                                 '{"metadata":{"finalizers":null}}', check=False)
        print("warning: Karpenter had not removed its nodes within 60 s; finalizers "
              "stripped", file=sys.stderr)

