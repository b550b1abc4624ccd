"""Living with an autoscaler: the words for a waiting pod, Karpenter's "fits no node"
verdict, and the bounded cost of reading it (a fake core API counts the LISTs; the real
Karpenter is tests/autoscale's part)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from qforge.k8s import naming
from qforge.k8s.autoscaling import (
    EVENT_LIST_SECONDS,
    EVENT_SELECTOR,
    UNFIT_GRACE_SECONDS,
    UnfitPods,
    pending_since,
    protection_annotations,
    unfit_reason,
    unschedulable_reason,
)
from qforge.k8s.executor import KubernetesExecutor
from qforge.record import Placement
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.unit.k8s.test_executor import FakeBatch, FakeCore, _answer

# Karpenter v1.14.3's verdict on a pod asking for 32 CPUs, as tests/autoscale saw it
# (pkg/controllers/provisioning/scheduling: PodFailedToScheduleEvent around
# InstanceTypeFilterError).
TOO_BIG = ("Failed to schedule pod, no instance type has enough resources, requirements="
           "karpenter.kwok.sh/instance-cpu In [4 8], karpenter.kwok.sh/instance-family In "
           "[c], karpenter.kwok.sh/kwoknodeclass In [default], karpenter.sh/capacity-type "
           "In [on-demand], karpenter.sh/initialized In [true], karpenter.sh/nodepool In "
           "[runners], karpenter.sh/registered In [true], kubernetes.io/arch In [amd64], "
           "kubernetes.io/os In [linux], qforge.io/pool In [runners], "
           'resources={"cpu":"32","memory":"1Gi","pods":"1"}')
# a user's label in the requirements must not pass for a transient verdict
TOO_BIG_LABELLED = TOO_BIG.replace("qforge.io/pool In [runners]",
                                   "team In [limits-offering]")
AT_LIMIT = ('Failed to schedule pod, all available instance types exceed limits for '
            'nodepool, NodePool="runners"')
SCHEDULER = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available"


def event(message: str, pod: str = "p", reason: str = "FailedScheduling",
          when: str = "2026-12-01T10:00:00Z") -> dict[str, Any]:
    return {"reason": reason, "message": message, "lastTimestamp": when,
            "involvedObject": {"kind": "Pod", "name": pod}}


def test_protection_annotations_both_autoscalers_honour() -> None:
    assert protection_annotations(True) == {
        "karpenter.sh/do-not-disrupt": "true",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert protection_annotations(False) == {}


def test_waiting_words_name_the_new_node_and_the_resource() -> None:
    wants = {"cpu": "1", "memory": "1Gi"}
    none = unschedulable_reason("no nodes available to schedule pods", wants)
    assert none.startswith("waiting for a new node: the cluster has no node for it yet")
    assert "cpu 1, memory 1Gi" in none
    short = unschedulable_reason(
        "0/3 nodes are available: 1 Insufficient memory, 3 Insufficient cpu. preemption: x",
        wants)
    assert short.startswith("waiting for a new node: no node has enough free cpu and memory")
    assert "preemption" not in short
    other = unschedulable_reason("0/1 nodes are available: 1 node(s) had untolerated taint", {})
    assert other.startswith("waiting for a node: kube-scheduler: Unschedulable: 0/1 nodes")
    # the scheduler's own word stays in every one (`qforge show` readers grep for it)
    assert all("Unschedulable" in text for text in (none, short, other))


def test_only_karpenters_resource_verdict_fails_a_pod() -> None:
    assert unfit_reason([event(TOO_BIG)]) == TOO_BIG.removeprefix("Failed to schedule pod, ")
    assert unfit_reason([event(TOO_BIG_LABELLED)]) is not None
    assert unfit_reason([]) is None
    assert unfit_reason([event(SCHEDULER)]) is None  # kube-scheduler: a node may come
    assert unfit_reason([event(AT_LIMIT)]) is None  # NodePool limits free up again
    assert unfit_reason([event(TOO_BIG, reason="Nominated")]) is None
    # the newest verdict counts
    assert unfit_reason([event(TOO_BIG, when="2026-12-01T10:00:00Z"),
                         event(AT_LIMIT, when="2026-12-01T10:00:05Z")]) is None


class EventCore(FakeCore):
    def __init__(self) -> None:
        super().__init__()
        self.pod_events: list[dict[str, Any]] = []
        self.lists: list[str] = []

    def list_namespaced_event(self, namespace: str, field_selector: str, **_: Any) -> Any:
        self.lists.append(field_selector)
        return _answer({"items": list(self.pod_events)})


def listed(core: EventCore) -> list[dict[str, Any]]:
    items = json.loads(core.list_namespaced_event("ns", field_selector=EVENT_SELECTOR).data)
    return list(items["items"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_events_are_listed_only_for_pods_pending_long_and_at_most_every_interval() -> None:
    core, clock = EventCore(), Clock()
    unfit = UnfitPods(lambda: listed(core), clock)
    core.pod_events = [event(TOO_BIG, pod="a")]
    assert unfit.due({}) == []
    assert unfit.due({"a": clock.now}) == []  # just became unschedulable
    assert core.lists == []
    clock.now += UNFIT_GRACE_SECONDS
    pods = unfit.due({"a": 1000.0, "b": 1000.0})
    assert pods == ["a", "b"]
    assert unfit.check(pods) == {"a": unfit_reason(core.pod_events)}
    assert core.lists == ["involvedObject.kind=Pod,reason=FailedScheduling"]
    for _ in range(20):  # many passes within one interval: no LIST due
        clock.now += EVENT_LIST_SECONDS / 40
        assert unfit.due({"b": 1000.0}) == []
    assert len(core.lists) == 1 and unfit.lists == 1
    clock.now += EVENT_LIST_SECONDS
    assert unfit.check(unfit.due({"b": 1000.0})) == {}
    assert len(core.lists) == 2


def test_a_failed_event_list_is_a_warning_not_a_crash() -> None:
    def refuse() -> list[dict[str, Any]]:
        raise ApiException(status=403, reason="Forbidden")

    unfit = UnfitPods(refuse, Clock())
    assert unfit.check(["a"]) == {}
    assert unfit.lists == 1


def test_a_pod_placed_again_is_no_longer_pending() -> None:
    assert pending_since(None, True, 5.0) == 5.0
    assert pending_since(5.0, True, 9.0) == 5.0  # still the first time it was seen
    assert pending_since(5.0, False, 9.0) is None


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


def _pending_pod(name: str, job_id: str) -> dict[str, Any]:
    return {"metadata": {"name": f"{name}-x", "annotations": {naming.ANNOTATION_JOB_ID: job_id},
                         "ownerReferences": [{"kind": "Job", "name": name}]},
            "spec": {"containers": [{"resources": {"requests": {"cpu": "32"}}}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient cpu."}]}}


def _launched(store: JobStore, clock: Clock, core: EventCore,
              batch: FakeBatch) -> tuple[KubernetesExecutor, str, str]:
    executor = KubernetesExecutor(store, Settings(namespace="ns"), batch, core, clock=clock,
                                  submit=lambda task: task())
    executor.tracker.jobs_listed([], 0.0)
    store.submit(JobSpec(molecule=parse_xyz(WATER), cpu=32), input_text=WATER)
    instance = "k8s.ns.worker_1"
    claimed = store.queue.claim(store.queue.queued()[0], instance, Placement(
        executor="kubernetes", worker_id="worker_1", instance=instance))
    assert claimed is not None
    executor.launch(claimed)
    return executor, claimed.record.job_id, naming.job_name(claimed.record.job_id)


def test_a_pod_no_node_can_fit_fails_its_job_with_karpenters_reason(store: JobStore) -> None:
    clock, core, batch = Clock(), EventCore(), FakeBatch()
    executor, job_id, name = _launched(store, clock, core, batch)
    executor.tracker.observe_job(batch.jobs[name])
    executor.tracker.observe_pod(_pending_pod(name, job_id))
    (update,) = executor.updates()
    assert update.waiting_reason is not None and "cpu 32" in update.waiting_reason
    assert update.waiting_reason.startswith("waiting for a new node")
    core.pod_events = [event(TOO_BIG, pod=f"{name}-x")]
    assert executor.collect() == []  # not pending long enough: no LIST yet
    assert core.lists == []
    clock.now += UNFIT_GRACE_SECONDS
    (outcome,) = executor.collect()
    assert outcome.error is not None and outcome.error.type == ErrorType.resource_error
    assert "no instance type has enough resources" in outcome.error.message
    assert "--cpu" in outcome.error.message
    # its Job (and pod) deleted: nothing stays Pending; the finalizer comes off once
    # the outcome is recorded
    assert batch.calls == ["create", "delete"]
    assert batch.jobs[name]["metadata"].get("deletionTimestamp")
    assert [e["reason"] for e in core.events] == ["Failed"]
    assert executor.active() == set()
    assert executor.requests["list events"] == 1 and len(core.lists) == 1


def test_a_pod_placed_before_the_verdict_is_not_failed(store: JobStore) -> None:
    clock, core, batch = Clock(), EventCore(), FakeBatch()
    executor, job_id, name = _launched(store, clock, core, batch)
    executor.tracker.observe_job(batch.jobs[name])
    pod = _pending_pod(name, job_id)
    executor.tracker.observe_pod(pod)
    core.pod_events = [event(TOO_BIG, pod=f"{name}-x")]
    clock.now += UNFIT_GRACE_SECONDS / 2
    executor.tracker.observe_pod({**pod, "spec": {**pod["spec"], "nodeName": "n1"},
                          "status": {"phase": "Running"}})
    clock.now += UNFIT_GRACE_SECONDS
    assert executor.collect() == []
    assert core.lists == []  # no pod waits: the Events are never read
    assert executor.active() == {job_id}
