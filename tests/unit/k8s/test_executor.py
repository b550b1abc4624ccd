"""The Kubernetes executor's decisions, with the API replaced by small in-memory fakes
(the real API server is the cluster tests' part: tests/cluster)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from controller.k8s import naming
from controller.k8s.executor import RESYNC_SECONDS, KubernetesExecutor
from controller.record import Placement
from controller.scheduling.core import Scheduler
from controller.settings import Settings
from controller.store.jobstore import Claimed, JobStore
from runner_image.atomic import write_text_atomic
from runner_image.molecule import parse_xyz
from runner_image.result import ErrorType, JobError, RunReport
from runner_image.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL as WATER

INSTANCE = "k8s.ns.worker_1"


class FakeBatch:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_error: ApiException | Exception | None = None
        self.creates = 0

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> Any:
        self.creates += 1
        if self.create_error is not None:
            raise self.create_error
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="Conflict")
        self.jobs[name] = {**body, "metadata": {**body["metadata"], "uid": f"uid-{name}"},
                           "status": {}}
        return SimpleNamespace(metadata=SimpleNamespace(uid=f"uid-{name}"))

    def read_namespaced_job(self, name: str, namespace: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        return self.jobs[name]

    def list_namespaced_job(self, namespace: str, label_selector: str) -> Any:
        return SimpleNamespace(items=list(self.jobs.values()))


class FakeCore:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []

    def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.append(body)

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        name = label_selector.split("=", 1)[1]
        return SimpleNamespace(items=[p for p in self.pods
                                      if p["metadata"]["labels"]["job-name"] == name])


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


@pytest.fixture
def executor(store: JobStore) -> KubernetesExecutor:
    return KubernetesExecutor(store, Settings(namespace="ns"), FakeBatch(), FakeCore())


def claim(store: JobStore) -> Claimed:
    spec = JobSpec(molecule=parse_xyz(WATER))
    store.submit(spec, input_text=WATER)
    placement = Placement(executor="kubernetes", worker_id="worker_1", instance=INSTANCE)
    claimed = store.claim(store.queued()[0], INSTANCE, placement)
    assert claimed is not None
    return claimed


def test_adopt_creates_the_job_a_crash_left_uncreated(store: JobStore,
                                                      executor: KubernetesExecutor) -> None:
    """Claimed, then the controller died before the create: the record names no Job.
    A result.json already in the folder must not pass for a finished run."""
    claimed = claim(store)
    write_text_atomic(store.layout.job_dir(claimed.record.job_id) / "result.json", "{}")
    assert executor.adopt(claimed)
    name = naming.job_name(claimed.record.job_id)
    assert list(executor.batch.jobs) == [name]
    assert executor.collect() == []
    assert executor.active() == {claimed.record.job_id}


def test_adopt_of_a_launched_job_that_is_gone_does_not_relaunch(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    name = naming.job_name(claimed.record.job_id)
    record = claimed.record.evolve(placement=Placement(
        executor="kubernetes", worker_id="worker_1", instance=INSTANCE, k8s_job=name))
    assert executor.adopt(Claimed(record, claimed.marker))
    assert executor.batch.creates == 0
    (outcome,) = executor.collect()
    assert outcome.error is not None
    assert outcome.error.type == ErrorType.infrastructure_error
    assert name in outcome.error.message and "deleted" in outcome.error.message


def test_already_exists_means_launched_without_a_second_event(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    executor.launch(claimed)
    assert executor.batch.creates == 2 and len(executor.batch.jobs) == 1
    assert [e["reason"] for e in executor.core.events] == ["Launched"]
    assert executor.active() == {claimed.record.job_id}


@pytest.mark.parametrize("error", [ApiException(status=503, reason="Service Unavailable"),
                                   ApiException(status=429, reason="Too Many Requests"),
                                   ConnectionRefusedError(111, "Connection refused")])
def test_transient_create_failure_gives_the_job_back(
        store: JobStore, executor: KubernetesExecutor, error: Exception) -> None:
    claimed = claim(store)
    executor.batch.create_error = error
    executor.launch(claimed)
    (outcome,) = executor.collect()
    assert outcome.requeue and outcome.job_id == claimed.record.job_id
    assert executor.active() == set()
    assert executor.core.events == []


def test_refused_create_raises_with_the_api_servers_message(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.batch.create_error = ApiException(status=403, reason="Forbidden")
    executor.batch.create_error.body = '{"message": "jobs.batch is forbidden: no"}'
    with pytest.raises(RuntimeError, match=re.escape("403 Forbidden: jobs.batch is forbidden: no")):
        executor.launch(claimed)
    assert executor.active() == set()


def _fail(job: dict[str, Any], reason: str) -> None:
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}


def test_failed_job_reads_its_pod_when_the_pod_watch_lags(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """The Job's Failed event came first; the watched pod still looks Running."""
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    pod = {"metadata": {"name": f"{name}-x", "labels": {"job-name": name},
                        "annotations": {naming.ANNOTATION_JOB_ID: claimed.record.job_id},
                        "ownerReferences": [{"kind": "Job", "name": name}]},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    executor.observe_pod(pod)
    job = executor.batch.jobs[name]
    _fail(job, "BackoffLimitExceeded")
    executor.observe_job(job)
    executor.core.pods = [{**pod, "status": {"phase": "Failed", "containerStatuses": [
        {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}]
    (outcome,) = executor.collect()
    assert outcome.error is not None and outcome.error.type == ErrorType.resource_error
    assert [e["reason"] for e in executor.core.events] == ["Launched", "Failed"]


def test_runner_error_in_result_json_is_passed_through(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    report = RunReport(success=False, error=JobError(type=ErrorType.input_error,
                                                      message="bad charge"),
                       started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z")
    write_text_atomic(store.layout.job_dir(claimed.record.job_id) / "result.json",
                      report.model_dump_json())
    executor.core.pods = [{"metadata": {"name": f"{name}-x", "labels": {"job-name": name}},
                           "spec": {}, "status": {"phase": "Failed", "containerStatuses": [
                               {"state": {"terminated": {"reason": "Error",
                                                         "exitCode": 1}}}]}}]
    job = executor.batch.jobs[name]
    _fail(job, "PodFailurePolicy")
    executor.observe_job(job)
    (outcome,) = executor.collect()
    assert outcome.error == report.error


def test_forget_all_drops_every_tracked_job(store: JobStore,
                                            executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    executor.forget_all()
    assert executor.active() == set() and executor.collect() == []


class CountingBatch(FakeBatch):
    def __init__(self) -> None:
        super().__init__()
        self.lists = 0

    def list_namespaced_job(self, namespace: str, label_selector: str) -> Any:
        self.lists += 1
        return super().list_namespaced_job(namespace, label_selector)


def test_idle_controller_makes_no_api_call_per_pass(store: JobStore) -> None:
    batch, now = CountingBatch(), [0.0]
    executor = KubernetesExecutor(store, Settings(namespace="ns"), batch, FakeCore(),
                                  clock=lambda: now[0])
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    for _ in range(10):
        now[0] += 5
        scheduler.run_once()
    assert batch.lists == 0 and batch.creates == 0
    store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()  # queued: the cap is counted from the cluster, then launched
    assert batch.lists == 1 and batch.creates == 1


def test_a_deletion_the_watch_missed_is_found_by_the_resync(store: JobStore) -> None:
    batch, now = CountingBatch(), [0.0]
    executor = KubernetesExecutor(store, Settings(namespace="ns"), batch, FakeCore(),
                                  clock=lambda: now[0])
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    executor.observe_job(batch.jobs[name])
    del batch.jobs[name]  # deleted while the watch was reconnecting: no DELETED event
    now[0] += RESYNC_SECONDS - 1
    assert executor.collect() == [] and batch.lists == 0
    now[0] += 1
    (outcome,) = executor.collect()
    assert batch.lists == 1
    assert outcome.error is not None and outcome.error.type == ErrorType.infrastructure_error
