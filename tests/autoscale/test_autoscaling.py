"""qforge on an autoscaled cluster: Karpenter's real KWOK provider makes the runner nodes.

The session's cluster (tests/kube autoscale mode) starts with no runner node. The
controller runs out of cluster (a real `qforge controller` process), its runner pods go
to the NodePool `runners` (nodeSelector and toleration, as the chart's values set them),
and kwok plays their lives (tests/kube/kwok-stages.yaml); each job's result.json is the
real harness's, written before its pod completes (tests/cluster/helpers.Site).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from tests.cluster.helpers import RUN_FOR, JobWatch, Site
from tests.kube.autoscale import INSTANCE_CPUS, RUNNER_PLACEMENT, AutoscaleCluster
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def runner_env(cap: int) -> dict[str, str]:
    return {"MAX_CONCURRENT_JOBS": str(cap), "RUNNER_CPU": "1", "RUNNER_MEMORY": "1Gi",
            **RUNNER_PLACEMENT}


def pods_of(site: Site, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = site.kubectl_json(
        "get", "pods", "-l", f"qforge.io/job-id={job_id}")["items"]
    return items


def running_pod(site: Site, job_id: str) -> dict[str, Any] | None:
    for pod in pods_of(site, job_id):
        if pod["status"].get("phase") == "Running" and pod["spec"].get("nodeName"):
            return pod
    return None


def unschedulable(site: Site) -> int:
    return sum(1 for p in site.kubectl_json("get", "pods")["items"]
               if any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
                      for c in p["status"].get("conditions") or []))


def no_runner_nodes(cluster: AutoscaleCluster) -> bool:
    return not cluster.karpenter_nodes() and not cluster.nodeclaims()


def test_120_jobs_at_cap_60_grow_the_cluster_and_it_shrinks_back(
        site: Site, kube: Any, autoscale_cluster: AutoscaleCluster) -> None:
    cluster = autoscale_cluster
    wait_until(lambda: no_runner_nodes(cluster), 180, "no runner node at the start")
    job_ids = site.submit_many(120)
    # First the pool may not grow (CPU limit 0): the 60 pods wait for a node, and still
    # count toward the cap - the controller launches no 61st Job.
    cluster.set_nodepool(cpu_limit="0")
    nodes_seen: set[str] = set()
    try:
        with JobWatch(kube, site.namespace) as watch:
            site.controller({RUN_FOR: "3s"}, **runner_env(60))
            wait_until(lambda: watch.seen() >= 60, 180, "60 Jobs launched")
            wait_until(lambda: unschedulable(site) == 60, 120, "60 pods waiting for a node")

            def all_say_waiting() -> bool:
                running = [j for j in job_ids if site.status(j) == "RUNNING"]
                return len(running) == 60 and all(
                    "waiting for a new node" in str(site.record(j).get("waiting_reason"))
                    for j in running)

            # several scheduling passes saw 60 pending pods (each pass lists the Jobs)
            wait_until(all_say_waiting, 120, "60 records saying they wait for a node")
            assert watch.seen() == 60
            waiting = next(j for j in job_ids if site.status(j) == "RUNNING")
            shown = site.qforge("show", waiting).stdout
            assert re.search(r"Waiting: +waiting for a new node", shown), shown
            assert "no node has enough free cpu" in shown or "no node for it yet" in shown
            cluster.set_nodepool()  # the pool may grow: Karpenter creates the nodes

            def finished() -> dict[str, str] | None:
                nodes_seen.update(n["metadata"]["name"] for n in cluster.karpenter_nodes())
                states = {j: site.status(j) for j in job_ids}
                return states if all(s in ("COMPLETED", "FAILED") for s in states.values()) \
                    else None

            states = wait_until(finished, 600, "120 jobs terminal", interval=1.0)
    finally:
        cluster.set_nodepool()
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, states
    assert watch.seen() == 120
    print(f"most unfinished Jobs at once: {watch.max_unfinished} (pods not ended), "
          f"{watch.max_unfinished_until_counted} (succeeded not yet counted)")
    assert watch.max_unfinished == 60  # reached, never exceeded
    ran_on = {str(site.record(j)["placement"]["node"]) for j in job_ids}
    assert ran_on <= nodes_seen, ran_on - nodes_seen  # every job ran on Karpenter's nodes
    # 60 one-CPU pods at once need at least 60 / (biggest instance type) nodes
    assert len(nodes_seen) >= math.ceil(60 / max(int(c) for c in INSTANCE_CPUS))
    # the queue drained: the runner nodes go (consolidation WhenEmpty)
    wait_until(lambda: no_runner_nodes(cluster), 180, "the runner nodes removed")


def test_a_long_calculation_keeps_its_node_while_karpenter_wants_it_gone(
        site: Site, kube: Any, autoscale_cluster: AutoscaleCluster) -> None:
    """Its neighbours done, the node of a long calculation is worth consolidating
    (WhenEmptyOrUnderutilized: a cheaper node would do); Karpenter says it is blocked by
    the runner pod's karpenter.sh/do-not-disrupt, and the node stays until it ends."""
    cluster = autoscale_cluster
    # 180 s: Karpenter may take over a minute, on a loaded machine, to evaluate the
    # consolidation and post DisruptionBlocked; the pod must still run by then.
    ctl = site.controller({RUN_FOR: "180s"}, **runner_env(10))
    long_job = site.submit_succeeding()
    pod = wait_until(lambda: running_pod(site, long_job), 120, "the long calculation running")
    node, pod_name = pod["spec"]["nodeName"], pod["metadata"]["name"]
    assert pod["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    ctl.stop()  # its Job runs on; the next controller adopts it
    site.controller({RUN_FOR: "2s"}, **runner_env(10))
    shorts = [site.submit_succeeding() for _ in range(3)]
    assert set(site.wait_terminal(shorts, 180).values()) == {"COMPLETED"}
    assert node in {site.record(j)["placement"]["node"] for j in shorts}
    cluster.set_nodepool(policy="WhenEmptyOrUnderutilized", consolidate_after="0s")
    try:
        def blocked() -> bool:
            events = cluster.kubectl_json(
                "get", "events", "-n", "default", "--field-selector",
                f"involvedObject.kind=Node,involvedObject.name={node},"
                "reason=DisruptionBlocked")["items"]
            if any("karpenter.sh/do-not-disrupt" in str(e.get("message")) for e in events):
                return True
            assert site.status(long_job) == "RUNNING", \
                "the long calculation ended before Karpenter said it blocks the node"
            return False

        wait_until(blocked, 160, "Karpenter to say the pod blocks disrupting its node")

        def ended_on_its_node() -> bool:
            live = cluster.kubectl_json("get", "node", node)
            assert not live["metadata"].get("deletionTimestamp"), "the node was disrupted"
            pods = pods_of(site, long_job)
            assert [p["metadata"]["name"] for p in pods] == [pod_name], pods
            return site.status(long_job) in ("COMPLETED", "FAILED")

        wait_until(ended_on_its_node, 240, "the long calculation to end", interval=1.0)
    finally:
        cluster.set_nodepool()
    record = site.record(long_job)
    assert record["status"] == "COMPLETED"
    assert record["placement"]["node"] == node and record["attempts"] == 1
    wait_until(lambda: no_runner_nodes(cluster), 180, "the runner nodes removed")


def test_a_job_no_instance_type_can_hold_fails_with_karpenters_reason(
        site: Site, autoscale_cluster: AutoscaleCluster) -> None:
    site.controller(**runner_env(5))
    too_many_cpus = site.submit("--cpu", "32")  # the pool's biggest type has 8
    too_much_memory = site.submit("--memory", "64Gi")  # ... and 16 GiB
    fine = site.submit_succeeding()
    states = site.wait_terminal([too_many_cpus, too_much_memory, fine], 240)
    assert states == {too_many_cpus: "FAILED", too_much_memory: "FAILED", fine: "COMPLETED"}
    for job_id, resource in ((too_many_cpus, '"cpu":"32"'), (too_much_memory, '"memory":"64Gi"')):
        error = site.record(job_id)["error"]
        assert error["type"] == "resource_error"
        assert "no instance type has enough resources" in error["message"]
        assert resource in error["message"]
        shown = site.qforge("show", job_id).stdout
        assert "resource_error" in shown and "fit no node the cluster autoscaler" in shown
        # nothing is left Pending: the Job and its pod are gone
        wait_until(lambda j=job_id: not site.k8s_jobs(j) and not pods_of(site, j), 60,
                   f"job {job_id}'s Job and pod deleted")


def test_a_node_lost_under_a_running_pod_runs_the_job_again_once(
        site: Site, kube: Any, autoscale_cluster: AutoscaleCluster) -> None:
    """The node vanishes under a running calculation (its instance is gone: the Node
    object goes without a drain). The pod garbage collector fails the orphaned pod with
    a DisruptionTarget condition; the Job's podFailurePolicy ignores it and replaces
    the pod, Karpenter makes a node for it, the job completes and is recorded once.
    (A plain `kubectl delete node` goes through Karpenter's termination finalizer, which
    waits for the do-not-disrupt calculation to finish before the node goes.)"""
    cluster = autoscale_cluster
    with JobWatch(kube, site.namespace) as watch:
        # long enough that the pod GC (every 20 s, 40 s after the node went) acts first
        site.controller({RUN_FOR: "90s"}, **runner_env(5))
        job_id = site.submit_succeeding()
        pod = wait_until(lambda: running_pod(site, job_id), 120, "the calculation running")
        lost = pod["spec"]["nodeName"]
        cluster.kubectl("patch", "node", lost, "--type=merge", "-p",
                        '{"metadata":{"finalizers":null}}')
        cluster.kubectl("delete", "node", lost, "--wait=false")
        record = site.wait_status(job_id, "COMPLETED", 400)
    assert watch.error is None, watch.error
    assert record["placement"]["node"] != lost  # run again, on a new node
    assert record["placement"]["pod"] != pod["metadata"]["name"]
    assert record["attempts"] == 1
    # one Job, whose own pod replacement ran it: recorded once
    assert {j: len(names) for j, names in watch.names_by_job_id.items()} == {job_id: 1}
    # the record is written from the pod's own end; the Job controller counts it after
    job = wait_until(lambda: next((j for j in site.k8s_jobs(job_id)
                                   if j["status"].get("succeeded") == 1), None), 60,
                     "the Job controller to count its pod succeeded")
    assert not any(c["type"] == "Failed" and c["status"] == "True"
                   for c in job["status"].get("conditions") or [])
    wait_until(lambda: no_runner_nodes(cluster), 180, "the runner nodes removed")
