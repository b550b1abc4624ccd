"""A controller without its pod watch (KUBE_POD_WATCH=false) reads pods only when
needed: the pure bookkeeping (controller/k8s/podreads.py), and the executor with the API
replaced by the in-memory fakes of test_executor.py (the real API server is the cluster
tier's part: tests/cluster/test_pod_reads.py)."""

from __future__ import annotations

from typing import Any

import pytest

from qforge.k8s import naming
from qforge.k8s.executor import KubernetesExecutor
from qforge.k8s.podreads import (
    POD_READ_AFTER,
    POD_READ_EVERY,
    POD_READS_PER_PASS,
    PodReads,
    waits_for_pod,
)
from qforge.k8s.status import pod_view
from qforge.record import JobRecord, Status
from qforge.scheduling.core import Scheduler
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from qforge_runner.timestamps import utcnow
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.unit.k8s.test_autoscaling import Clock
from tests.unit.k8s.test_executor import INSTANCE, FakeBatch, FakeCore, _pod, _succeed
from tests.unit.k8s.test_executor import store as store  # the fixture


def _job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": status}


@pytest.mark.parametrize(("status", "waits"), [
    ({}, True),  # no pod counted yet
    ({"active": 1, "ready": 0}, True),  # a pod, not ready (Pending: unscheduled, pulling)
    ({"active": 1, "ready": 1}, False),
    ({"succeeded": 1}, False),
    ({"failed": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]}, False),
    ({"conditions": [{"type": "Failed", "status": "True"}]}, False),
    ({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}, False),
])
def test_a_job_waits_for_its_pod_until_one_is_ready_or_it_ends(
        status: dict[str, Any], waits: bool) -> None:
    assert waits_for_pod(_job(**status)) is waits
    assert waits_for_pod(None) is False  # a Job not seen: nothing to read yet


def test_pods_are_read_after_a_while_then_every_interval_and_once_more_when_started() -> None:
    reads = PodReads()
    waiting = {"a": 100.0}
    assert reads.due(waiting, {"a"}, 100.0 + POD_READ_AFTER - 1) == []  # most start soon
    assert reads.due(waiting, {"a"}, 100.0 + POD_READ_AFTER) == ["a"]
    assert reads.due(waiting, {"a"}, 100.0 + POD_READ_AFTER + 1) == []  # just read
    later = 100.0 + POD_READ_AFTER + POD_READ_EVERY
    assert reads.due(waiting, {"a"}, later) == ["a"]  # still waiting: read again
    assert reads.due({}, {"a"}, later + 1) == ["a"]  # started: once more (its node)
    assert reads.due({}, {"a"}, later + 100) == []  # and no more
    # a Job read while waiting whose verdict came first is not read again
    assert reads.due({"b": 0.0}, {"b"}, POD_READ_AFTER) == ["b"]
    assert reads.due({}, set(), POD_READ_AFTER + 1) == []


def test_the_longest_waiting_are_read_first_and_a_pass_reads_a_bounded_number() -> None:
    reads = PodReads()
    waiting = {f"j{i:03d}": float(1000 - i) for i in range(3 * POD_READS_PER_PASS)}
    first = reads.due(waiting, set(waiting), 2000.0)
    assert len(first) == POD_READS_PER_PASS
    assert first == sorted(waiting, key=waiting.__getitem__)[:POD_READS_PER_PASS]
    second = reads.due(waiting, set(waiting), 2000.0)
    assert len(second) == POD_READS_PER_PASS and not set(first) & set(second)


def _unwatched(store: JobStore, clock: Clock) -> tuple[KubernetesExecutor, Scheduler]:
    settings = Settings(namespace="ns", kube_pod_watch=False)
    executor = KubernetesExecutor(store, settings, FakeBatch(), FakeCore(), clock=clock,
                                  submit=lambda task: task())
    executor.tracker.jobs_listed([], 0.0)
    scheduler = Scheduler(store, executor, settings, instance=INSTANCE)
    scheduler.start()
    return executor, scheduler


def _one_job_shown(store: JobStore) -> tuple[KubernetesExecutor, Scheduler, JobRecord, str]:
    """A controller without the watch that launched one job, whose Job the API shows."""
    executor, scheduler = _unwatched(store, Clock())
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    executor.tracker.job_event("ADDED", executor.batch.jobs[name])
    return executor, scheduler, record, name


def test_without_the_pod_watch_a_waiting_job_says_why_and_then_where_it_runs(
        store: JobStore) -> None:
    clock = Clock()
    executor, scheduler = _unwatched(store, clock)
    core: FakeCore = executor.core
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    executor.tracker.job_event("ADDED", {**executor.batch.jobs[name],
                                         "status": {"active": 1, "ready": 0}})
    pending = _pod(name, record.job_id, "Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    pending["spec"] = {}
    core.pods = [pending]
    scheduler.run_once()
    assert executor.api.requests["list pods"] == 0  # a pod usually starts at once
    clock.now += POD_READ_AFTER
    scheduler.run_once()  # read, and its reason written in the same pass
    assert executor.api.requests["list pods"] == 1
    waiting = store.read(record.job_id)
    assert waiting.status is Status.RUNNING
    assert waiting.waiting_reason is not None and "Insufficient cpu" in waiting.waiting_reason
    # its pod got a node and is ready: read once more, and the record says where
    core.pods = [_pod(name, record.job_id, "Running")]
    executor.tracker.job_event("MODIFIED", {**executor.batch.jobs[name],
                                            "status": {"active": 1, "ready": 1}})
    scheduler.run_once()
    assert executor.api.requests["list pods"] == 2
    running = store.read(record.job_id)
    assert running.waiting_reason is None
    assert running.placement is not None and running.placement.node == "n1"
    clock.now += 10 * POD_READ_EVERY
    scheduler.run_once()
    assert executor.api.requests["list pods"] == 2  # it runs: nothing more to read


def test_without_the_pod_watch_a_success_is_recorded_on_the_node_its_runner_names(
        store: JobStore) -> None:
    """No pod seen, none read: the runner's report (its NODE_NAME and POD_NAME) says
    where it ran, and the COMPLETED record keeps it beside its Job's name."""
    executor, scheduler, record, name = _one_job_shown(store)
    _succeed(store, record.job_id, started_at=utcnow(), node="kwok-node-3",
             pod=f"{name}-abcde")
    executor.tracker.job_event("MODIFIED", {**executor.batch.jobs[name],
                                            "status": {"succeeded": 1}})
    scheduler.run_once()
    final = store.read(record.job_id)
    assert final.status is Status.COMPLETED and final.placement is not None
    assert (final.placement.node, final.placement.pod, final.placement.k8s_job) == (
        "kwok-node-3", f"{name}-abcde", name)
    assert executor.api.requests["list pods"] == 0


def test_without_the_pod_watch_a_success_costs_no_read(store: JobStore) -> None:
    clock = Clock()
    executor, scheduler = _unwatched(store, clock)
    records = [store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
               for _ in range(2)]
    scheduler.run_once()
    early, late = records
    for record in records:
        name = naming.job_name(record.job_id)
        executor.tracker.job_event("ADDED", {**executor.batch.jobs[name],
                                             "status": {"active": 1, "ready": 1}})
    # the early look goes by the Job's active pod, not by a watched pod
    _succeed(store, early.job_id, started_at=utcnow())
    assert executor.look_for_results() == 2
    scheduler.run_once()
    assert store.read(early.job_id).status is Status.COMPLETED
    # the other by its Job's own status
    _succeed(store, late.job_id, started_at=utcnow())
    name = naming.job_name(late.job_id)
    executor.tracker.job_event("MODIFIED", {**executor.batch.jobs[name],
                                            "status": {"succeeded": 1}})
    clock.now += 10 * POD_READ_EVERY
    scheduler.run_once()
    assert store.read(late.job_id).status is Status.COMPLETED
    assert executor.api.requests["list pods"] == 0
    assert executor.pod_reads is not None


def test_without_the_pod_watch_the_waiting_pods_read_are_counted_by_reason(
        store: JobStore) -> None:
    """What the runner-pods-waiting gauge shows without the watch: the pods read for
    the tracked Jobs that wait, by reason; none once the pod runs."""
    executor, _, record, name = _one_job_shown(store)
    assert executor.tracker.waiting_by_reason() == {}
    pending = _pod(name, record.job_id, "Pending", conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    pending["spec"] = {}
    executor.tracker.pods_read(name, [pod_view(pending)])
    assert executor.tracker.waiting_by_reason() == {"Unschedulable": 1}
    executor.tracker.pods_read(name, [pod_view(_pod(name, record.job_id, "Running"))])
    assert executor.tracker.waiting_by_reason() == {}
