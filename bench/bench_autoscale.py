"""Benchmark: qforge on nodes Karpenter makes vs on nodes that are already there.

Starts the autoscaling mode of tests/kube twice (control plane, Karpenter's real KWOK
provider, kwok): once with no runner node (Karpenter creates them), once with --nodes
pre-created kwok nodes of the NodePool's biggest shape (8 CPU, 16 GiB, the pool's label
and taint), Karpenter running in both. Each time --jobs water jobs are queued first (the
real harness's result.json written for each, as tests/autoscale does; queued through
the store's API, not 200 CLI processes), then a real
`qforge controller` (out of cluster, cap --cap, 1-CPU runners on the pool, kwok runs each
pod for --run-for) drains the queue; timed from the controller's start to the last
COMPLETED.

  scale-up latency  for each node Karpenter created: the first runner pod placed on it
                    (created Pending, no node yet) -> that node's Ready condition (API
                    timestamps, 1 s resolution); median over the nodes.
  throughput ratio  time on pre-created nodes / time on autoscaled nodes; target >= 0.8.

Prints two `bench:` lines. Knobs: --jobs/BENCH_AUTOSCALE_JOBS (200),
--cap/BENCH_AUTOSCALE_CAP (100), --nodes/BENCH_AUTOSCALE_NODES (13 = 100/8 rounded up),
--run-for/BENCH_AUTOSCALE_RUN_FOR (5s).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import env_int, log, median

from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from tests.cluster.helpers import RUN_FOR, Results, Site
from tests.kube.autoscale import (
    INSTANCE_CPUS,
    RUNNER_PLACEMENT,
    AutoscaleCluster,
    AutoscaleOptions,
)
from tests.kube.tools import KubeToolsError
from tests.molecules import WATER_EXPERIMENTAL as WATER


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ready_at(node: dict[str, Any]) -> float | None:
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _ts(cond["lastTransitionTime"])
    return None


def run(cluster: AutoscaleCluster, tmp: Path, results: Results, jobs: int, cap: int,
        run_for: str, label: str) -> tuple[float, list[float]]:
    """(seconds to drain the queue, scale-up latencies of the nodes Karpenter made)."""
    site = Site.create(cluster, tmp, results, f"bench-{label}")
    try:
        log(f"{label}: queueing {jobs} jobs")
        # through the store's own API, in this process (the CLI's start-up, 200 times,
        # would cost minutes and time nothing of interest)
        store = JobStore(site.jobs_dir)
        spec = JobSpec(molecule=parse_xyz(WATER))
        ids = []
        for _ in range(jobs):
            job_id = store.submit(spec, input_text=WATER).job_id
            site.write_result(job_id, results.success(spec))
            ids.append(job_id)
        first_pod: dict[str, float] = {}  # node -> creation of the first pod on it
        nodes: dict[str, dict[str, Any]] = {}
        t0 = time.monotonic()
        site.controller({RUN_FOR: run_for}, MAX_CONCURRENT_JOBS=str(cap), RUNNER_CPU="1",
                        RUNNER_MEMORY="1Gi", **RUNNER_PLACEMENT)
        deadline = t0 + 1800
        while True:
            done = sum(1 for j in ids if site.status(j) in ("COMPLETED", "FAILED"))
            if done == len(ids):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: {done} of {len(ids)} jobs done after 1800 s")
            for pod in site.kubectl_json("get", "pods")["items"]:
                node = pod["spec"].get("nodeName")
                if node:
                    created = _ts(pod["metadata"]["creationTimestamp"])
                    first_pod[node] = min(first_pod.get(node, created), created)
            for node in cluster.karpenter_nodes():
                nodes[node["metadata"]["name"]] = node
            time.sleep(1)
        elapsed = time.monotonic() - t0
        failed = [j for j in ids if site.status(j) != "COMPLETED"]
        if failed:
            raise RuntimeError(f"{label}: {len(failed)} jobs did not complete")
        latencies = []
        for name, node in nodes.items():
            ready = _ready_at(node)
            if ready is not None and name in first_pod:
                latencies.append(ready - first_pod[name])
        log(f"{label}: {jobs} jobs in {elapsed:.1f} s, {len(nodes)} Karpenter nodes")
        return elapsed, latencies
    finally:
        for ctl in site.controllers:
            ctl.stop()
        site.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=env_int("BENCH_AUTOSCALE_JOBS", 200))
    parser.add_argument("--cap", type=int, default=env_int("BENCH_AUTOSCALE_CAP", 100))
    biggest = max(int(c) for c in INSTANCE_CPUS)
    parser.add_argument("--nodes", type=int, default=env_int(
        "BENCH_AUTOSCALE_NODES", math.ceil(100 / biggest)))
    parser.add_argument("--run-for", default="5s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qforge-bench-autoscale-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "reference").mkdir()
        results = Results(tmp / "reference")
        try:
            with _cluster("bench-autoscale", 0) as cluster:
                auto, latencies = run(cluster, tmp / "auto", results, args.jobs, args.cap,
                                      args.run_for, "autoscaled")
            with _cluster("bench-fixed", args.nodes) as cluster:
                fixed, _ = run(cluster, tmp / "fixed", results, args.jobs, args.cap,
                               args.run_for, "pre-created")
        except KubeToolsError as exc:
            print(f"bench: autoscale skipped ({exc})")
            return 1
    lat = median(latencies) if latencies else float("nan")
    print(f"bench: autoscale scale-up latency (first Pending runner pod -> its node Ready) "
          f"median {lat:.1f} s over {len(latencies)} Karpenter nodes "
          f"(target <= 30 s, cluster-autoscaler's SLO): {'met' if lat <= 30 else 'NOT met'}")
    ratio = fixed / auto
    print(f"bench: autoscale {args.jobs} jobs at cap {args.cap}: {auto:.1f} s on autoscaled "
          f"nodes vs {fixed:.1f} s on {args.nodes} pre-created nodes, ratio {ratio:.2f} "
          f"(target >= 0.8): {'met' if ratio >= 0.8 else 'NOT met'}")
    return 0


class _cluster:
    """An autoscaling cluster for one side of the benchmark (logs kept on failure)."""

    def __init__(self, name: str, nodes: int) -> None:
        self.cluster = AutoscaleCluster(AutoscaleOptions(
            name=name, kwok_nodes=nodes, node_cpu=str(max(int(c) for c in INSTANCE_CPUS)),
            node_memory="16Gi"))

    def __enter__(self) -> AutoscaleCluster:
        self.cluster.start()
        return self.cluster

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.cluster.stop(keep_logs=exc_type is not None)


if __name__ == "__main__":
    sys.exit(main())
