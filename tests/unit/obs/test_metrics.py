"""qforge.metrics: the values the collectors and the observer export."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from qforge.metrics.kubernetes import (
    ControllerMetrics,
    KubernetesMetrics,
    RunnerPods,
    classify,
    pod_waiting_reason,
    reason_of,
)
from qforge.metrics.process import ProcessMetrics
from qforge.metrics.scheduling import SchedulingMetrics, seconds_between
from qforge.metrics.store import StoreCollector
from qforge.record import Placement, Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.executor import Outcome
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.result import ErrorType, JobError
from tests.waiting import wait_until

from ..core.conftest import WATER, water_spec
from ..core.conftest import store as store  # the fixture


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return samples(registry)[(name, tuple(sorted(labels.items())))]


# --- Kubernetes requests ------------------------------------------------------------

@pytest.mark.parametrize(("method", "url", "verb", "resource"), [
    ("GET", "https://k:6443/apis/batch/v1/namespaces/q/jobs?labelSelector=a%3Db",
     "list", "jobs"),
    ("GET", "https://k:6443/apis/batch/v1/namespaces/q/jobs/qf-water", "get", "jobs"),
    ("POST", "https://k:6443/apis/batch/v1/namespaces/q/jobs", "create", "jobs"),
    ("DELETE", "https://k:6443/apis/batch/v1/namespaces/q/jobs/qf-water", "delete", "jobs"),
    ("DELETE", "https://k:6443/api/v1/namespaces/q/pods", "deletecollection", "pods"),
    ("POST", "https://k:6443/api/v1/namespaces/q/events", "create", "events"),
    ("PUT", "https://k:6443/apis/coordination.k8s.io/v1/namespaces/q/leases/qforge",
     "update", "leases"),
    ("GET", "https://k:6443/api/v1/namespaces/q/pods?watch=true", "watch", "pods"),
    ("GET", "https://k:6443/api/v1/namespaces/q/pods/p1/log", "get", "pods/log"),
    ("GET", "https://k:6443/api/v1/namespaces/q", "get", "namespaces"),
    ("GET", "https://k:6443/api/v1/nodes", "list", "nodes"),
])
def test_requests_are_named_by_verb_and_resource(method: str, url: str, verb: str,
                                                 resource: str) -> None:
    assert classify(method, url) == (verb, resource)


def test_launch_error_reasons_are_kubernetes_status_reasons() -> None:
    assert [reason_of(c) for c in ("403", "422", "429", "500", "none", "418")] == [
        "Forbidden", "Invalid", "TooManyRequests", "InternalError", "NoAnswer", "HTTP418"]


class _Answer:
    def __init__(self, status: int) -> None:
        self.status = status


class _Rest:
    """The kubernetes client's REST layer, reduced to its `request` (answers scripted)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers

    def request(self, method: str, url: str, **_: Any) -> _Answer:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return _Answer(answer)


def test_instrumented_client_counts_codes_and_launch_errors() -> None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import NewConnectionError

    registry = CollectorRegistry()
    metrics = KubernetesMetrics(registry)
    client = type("Client", (), {})()
    client.rest_client = _Rest([201, 409, ApiException(status=422, reason="Invalid"),
                                NewConnectionError(None, "refused"), 200])  # type: ignore[arg-type]
    metrics.instrument(client)
    jobs = "https://k/apis/batch/v1/namespaces/q/jobs"
    assert client.rest_client.request("POST", jobs).status == 201
    client.rest_client.request("POST", jobs)
    with pytest.raises(ApiException):
        client.rest_client.request("POST", jobs)
    with pytest.raises(NewConnectionError):
        client.rest_client.request("POST", jobs)
    client.rest_client.request("GET", jobs)
    got = samples(registry)
    for code, n in (("201", 1), ("409", 1), ("422", 1), ("none", 1)):
        key = ("qforge_kubernetes_api_requests_total",
               (("code", code), ("resource", "jobs"), ("verb", "create")))
        assert got[key] == n
    assert value(registry, "qforge_kubernetes_api_requests_total",
                 verb="list", resource="jobs", code="200") == 1
    assert value(registry, "qforge_launch_errors_total", reason="Invalid") == 1
    assert value(registry, "qforge_launch_errors_total", reason="NoAnswer") == 1
    assert ("qforge_launch_errors_total", (("reason", "AlreadyExists"),)) not in got
    assert value(registry, "qforge_kubernetes_api_request_duration_seconds_count",
                 verb="create", resource="jobs") == 4


# --- runner pods --------------------------------------------------------------------

def pod(name: str, phase: str, *, waiting: str | None = None, unschedulable: bool = False,
        node: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if waiting:
        status["containerStatuses"] = [{"state": {"waiting": {"reason": waiting}}}]
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": "0/3 nodes ..."}]
    return {"metadata": {"name": name, "namespace": "q"}, "spec": {"nodeName": node},
            "status": status}


def test_waiting_reasons_are_one_kubernetes_word() -> None:
    assert pod_waiting_reason(pod("a", "Pending", unschedulable=True)) == "Unschedulable"
    assert pod_waiting_reason(pod("a", "Pending", waiting="ErrImagePull", node="n")) \
        == "ErrImagePull"
    assert pod_waiting_reason(pod("a", "Pending")) == "Scheduling"
    assert pod_waiting_reason(pod("a", "Pending", node="n")) == "Pending"
    assert pod_waiting_reason(pod("a", "Running", node="n")) is None


def test_runner_pods_by_phase_and_waiting_reason_follow_the_watch() -> None:
    registry = CollectorRegistry()
    pods = RunnerPods()
    registry.register(pods)
    pods.observe(None, pod("a", "Pending", unschedulable=True))
    pods.observe("ADDED", pod("b", "Pending", unschedulable=True))
    pods.observe("MODIFIED", pod("c", "Pending", waiting="ImagePullBackOff", node="n"))
    pods.observe("MODIFIED", pod("d", "Running", node="n"))
    pods.observe("MODIFIED", pod("a", "Running", node="n"))  # a was placed
    pods.observe("DELETED", pod("d", "Running", node="n"))
    assert value(registry, "qforge_runner_pods", phase="Pending") == 2
    assert value(registry, "qforge_runner_pods", phase="Running") == 1
    assert value(registry, "qforge_runner_pods", phase="Failed") == 0
    assert value(registry, "qforge_runner_pods_waiting", reason="Unschedulable") == 1
    assert value(registry, "qforge_runner_pods_waiting", reason="ImagePullBackOff") == 1


# --- the store and the scheduler ------------------------------------------------------

def test_store_gauges_count_queued_and_running_from_the_index(store: JobStore) -> None:
    for _ in range(3):
        store.submit(water_spec(), input_text=WATER)
    key = store.queue.queued()[0]
    store.queue.claim(key, "w1", Placement(executor="local"))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    assert value(registry, "qforge_jobs", status="queued") == 2
    assert value(registry, "qforge_jobs", status="running") == 1
    assert value(registry, "qforge_jobs", status="completed") == 0
    assert value(registry, "qforge_jobs_submitted_total") == 3
    assert value(registry, "qforge_store_up") == 1


def test_finished_counts_follow_the_done_markers_off_the_scrape(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from qforge.metrics import store as store_metrics

    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(3)]
    collector = StoreCollector(store)
    registry = CollectorRegistry()
    registry.register(collector)
    assert value(registry, "qforge_jobs", status="completed") == 0  # the first count
    for key in store.queue.queued()[:2]:
        claimed = store.queue.claim(key, "w1", Placement(executor="local"))
        assert claimed is not None
        store.queue.finish(claimed, claimed.record.evolve(status=Status.FAILED, error=JobError(
            type=ErrorType.xtb_error, message="x")))
    # the scrape answers at once with the last count and counts again in the background
    monkeypatch.setattr(store_metrics, "REFRESH_MIN_SECONDS", 0.0)
    wait_until(lambda: value(registry, "qforge_jobs", status="failed") == 2, 30,
               "the failed count to catch up", interval=0.05)
    assert value(registry, "qforge_jobs", status="queued") == 1
    assert value(registry, "qforge_jobs_submitted_total") == len(ids)


def test_seconds_between_record_stamps() -> None:
    assert seconds_between("2026-12-01T10:00:00.000000Z", "2026-12-01T10:01:30.500000Z") \
        == 90.5
    assert seconds_between(None, "2026-12-01T10:00:00Z") is None


class _Executor:
    kind = "local"
    others_may_recover = True

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.running: set[str] = set()

    def attach(self, wake: threading.Event) -> None: ...
    def free_slots(self) -> int: return 2 - len(self.running)
    def launch(self, claimed: Claimed) -> None: self.running.add(claimed.record.job_id)
    def adopt(self, claimed: Claimed) -> bool: return False
    def updates(self) -> list[Any]: return []
    def cancel(self, job_id: str) -> bool: return False
    def active(self) -> set[str]: return set(self.running)
    def holding(self) -> set[str]: return set(self.running)
    def shutdown(self) -> list[Outcome]: return []

    def collect(self) -> list[Outcome]:
        out, self.outcomes = self.outcomes, []
        for o in out:
            self.running.discard(o.job_id)
        return out


def test_the_scheduler_reports_starts_finishes_and_passes(store: JobStore) -> None:
    ids = [store.submit(water_spec(), input_text=WATER).job_id for _ in range(3)]
    registry = CollectorRegistry()
    metrics = SchedulingMetrics(registry)
    executor = _Executor()
    sched = Scheduler(store, executor, Settings(jobs_dir=store.root, max_concurrent_jobs=2),
                      observer=metrics)
    sched.start()
    sched.run_once()
    assert value(registry, "qforge_jobs_started_total") == 2
    assert value(registry, "qforge_job_queue_wait_seconds_count") == 2
    store.cancels.request(ids[2])  # still queued: cancelled before it starts
    executor.outcomes = [Outcome(ids[0], error=JobError(type=ErrorType.timeout,
                                                        message="too long")),
                         Outcome(ids[1], error=JobError(type=ErrorType.xtb_error,
                                                        message="xtb stopped"))]
    sched.run_once()
    assert value(registry, "qforge_jobs_finished_total", status="failed",
                 error_type="timeout") == 1
    assert value(registry, "qforge_jobs_finished_total", status="failed",
                 error_type="xtb_error") == 1
    assert value(registry, "qforge_jobs_finished_total", status="cancelled",
                 error_type="cancelled") == 1
    assert value(registry, "qforge_jobs_finished_total", status="completed",
                 error_type="none") == 0
    assert value(registry, "qforge_job_run_seconds_count") == 2
    assert value(registry, "qforge_xtb_wall_seconds_count") == 0
    assert value(registry, "qforge_scheduling_pass_duration_seconds_count") == 2
    assert value(registry, "qforge_scheduling_last_pass_timestamp_seconds") > 0
    assert store.read(ids[2]).status is Status.CANCELLED


def test_running_and_queued_per_owner_follow_the_store(store: JobStore) -> None:
    alice = [store.submit(water_spec(), input_text=WATER, owner="alice").job_id
             for _ in range(4)]
    store.submit(water_spec(), input_text=WATER, owner="bob")
    registry = CollectorRegistry()
    executor = _Executor()
    sched = Scheduler(store, executor, Settings(jobs_dir=store.root, max_concurrent_jobs=2),
                      observer=SchedulingMetrics(registry))
    sched.start()
    sched.run_once()  # one slot each
    assert value(registry, "qforge_owner_running_jobs", owner="alice") == 1
    assert value(registry, "qforge_owner_queued_jobs", owner="alice") == 3
    assert value(registry, "qforge_owner_running_jobs", owner="bob") == 1
    assert value(registry, "qforge_owner_queued_jobs", owner="bob") == 0
    for job_id in alice:
        store.cancels.request(job_id)
    executor.outcomes = [Outcome(j, error=JobError(type=ErrorType.cancelled,
                                                   message="cancelled by user"))
                         for j in executor.running if j in alice]
    sched.run_once()
    sched.run_once()
    # no job of alice's left: her series are gone, not left at their last value
    owners = {dict(labels)["owner"] for (name, labels) in samples(registry)
              if name.startswith("qforge_owner_")}
    assert owners == {"bob"}


def test_process_metrics_serve_and_refuse_a_busy_port(store: JobStore) -> None:
    from urllib.request import urlopen

    from qforge.settings import SettingsError

    settings = Settings(jobs_dir=store.root)
    first = ProcessMetrics(settings, "worker", store=store)
    second = ProcessMetrics(settings, "worker", store=store)
    try:
        port = first.serve("127.0.0.1", 0)
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert 'qforge_build_info{component="worker"' in text
        with pytest.raises(SettingsError, match="METRICS_PORT"):
            second.serve("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_a_listing_replaces_the_pods_and_the_tees_feed_both() -> None:
    registry = CollectorRegistry()
    pods = RunnerPods()
    registry.register(pods)
    fed: list[Any] = []
    on_event = pods.tee_event(lambda kind, body: fed.append((kind, body["metadata"]["name"])))
    on_list = pods.tee_list(lambda bodies, at: fed.append(("LIST", len(bodies))))
    on_event("ADDED", pod("gone", "Pending", unschedulable=True))
    on_list([pod("a", "Running", node="n"), pod("b", "Succeeded", node="n")], 0.0)
    assert fed == [("ADDED", "gone"), ("LIST", 2)]
    assert value(registry, "qforge_runner_pods", phase="Pending") == 0
    assert value(registry, "qforge_runner_pods", phase="Running") == 1
    assert value(registry, "qforge_runner_pods", phase="Succeeded") == 1


def test_a_controller_without_its_pod_watch_exports_the_waiting_pods_it_read_only() -> None:
    """It sees only the pods it reads (KUBE_POD_WATCH=false, the default): those that
    wait, by reason, from its tracker; no pods by phase (zeros would read as "none
    running")."""
    metrics = ControllerMetrics(Settings(kube_pod_watch=False))
    names = {m.name for m in metrics.registry.collect()}
    assert "qforge_runner_pods" not in names and "qforge_kubernetes_api_requests" in names
    assert ("qforge_runner_pods_waiting", (("reason", "Unschedulable"),)) \
        not in samples(metrics.registry)  # nothing read yet
    metrics.kubernetes.read_waiting.source = lambda: {"Unschedulable": 2,
                                                      "ImagePullBackOff": 1}
    assert value(metrics.registry, "qforge_runner_pods_waiting", reason="Unschedulable") == 2
    assert value(metrics.registry, "qforge_runner_pods_waiting",
                 reason="ImagePullBackOff") == 1
    watched = {m.name for m in ControllerMetrics(Settings(kube_pod_watch=True))
               .registry.collect()}
    assert "qforge_runner_pods" in watched
