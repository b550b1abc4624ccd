"""The Kubernetes executor's decisions, with the API replaced by small in-memory fakes
and the watch feed played by the test (the real API server and the real watch are the
cluster tests' part: tests/cluster)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from qforge.k8s import events, naming
from qforge.k8s.executor import KubernetesExecutor
from qforge.record import Placement, Status
from qforge.scheduling.core import Scheduler
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.atomic import write_text_atomic
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType, JobError, JobResult, Quality, RunReport
from qforge_runner.spec import JobSpec
from qforge_runner.timestamps import utcnow
from tests.molecules import WATER_EXPERIMENTAL as WATER

INSTANCE = "k8s.ns.worker_1"


def _answer(body: dict[str, Any]) -> Any:
    """What a request made with _preload_content=False returns: raw JSON in .data."""
    return SimpleNamespace(data=json.dumps(body).encode())


class FakeBatch:
    """Jobs by name; every call counted by verb. No list: the executor never lists."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_error: ApiException | Exception | None = None
        self.calls: list[str] = []
        self.patches: list[tuple[str, list[dict[str, Any]]]] = []

    @property
    def creates(self) -> int:
        return self.calls.count("create")

    def create_namespaced_job(self, namespace: str, body: dict[str, Any],
                              **_: Any) -> Any:
        self.calls.append("create")
        if self.create_error is not None:
            raise self.create_error
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="Conflict")
        self.jobs[name] = {**body, "metadata": {**body["metadata"], "uid": f"uid-{name}"},
                           "status": {}}
        return _answer(self.jobs[name])

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append("get")
        if name not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        return _answer(self.jobs[name])

    def patch_namespaced_job(self, name: str, namespace: str, body: list[dict[str, Any]],
                             **_: Any) -> Any:
        self.calls.append("patch")
        self.patches.append((name, body))
        job = self.jobs[name]
        index = int(body[0]["path"].rsplit("/", 1)[1])
        assert job["metadata"]["finalizers"][index] == body[0]["value"]  # the "test" op
        job["metadata"]["finalizers"] = [f for i, f in enumerate(
            job["metadata"]["finalizers"]) if i != index]
        return _answer(job)

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append("delete")
        self.jobs[name]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return _answer({})


class FakeCore:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []

    def create_namespaced_event(self, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        self.events.append(body)
        return _answer(body)

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> Any:
        name = label_selector.split("=", 1)[1]
        return _answer({"items": [p for p in self.pods
                                  if p["metadata"]["labels"]["job-name"] == name]})


def make_executor(store: JobStore, **settings: Any) -> KubernetesExecutor:
    """An executor fed by pod events as the pod watch feeds it (KUBE_POD_WATCH=true;
    without it: test_podreads.py)."""
    settings.setdefault("kube_pod_watch", True)
    executor = KubernetesExecutor(store, Settings(namespace="ns", **settings), FakeBatch(),
                                  FakeCore(), submit=lambda task: task())
    executor.tracker.jobs_listed([], 0.0)  # the watch's first listing: an empty namespace
    return executor


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


@pytest.fixture
def executor(store: JobStore) -> KubernetesExecutor:
    return make_executor(store)


def claim(store: JobStore) -> Claimed:
    spec = JobSpec(molecule=parse_xyz(WATER))
    store.submit(spec, input_text=WATER)
    placement = Placement(executor="kubernetes", worker_id="worker_1", instance=INSTANCE)
    claimed = store.queue.claim(store.queue.queued()[0], INSTANCE, placement)
    assert claimed is not None
    return claimed


def _succeed(store: JobStore, job_id: str, started_at: str = "2026-01-01T00:00:00Z",
             node: str | None = None, pod: str | None = None) -> None:
    """Play the runner: a successful report in the job's folder (`node`, `pod`: where
    it says it ran, as a runner pod does)."""
    result = JobResult(
        energy=-5.0705444, gap=14.38, dipole=None, partial_charges=None, geometry=None,
        frequencies=None, converged=True, xtb_version="6.5.1", method="gfn2", task="opt",
        wall_time=0.1, quality=Quality(converged=True, gap_ok=True, ok=True))
    report = RunReport(success=True, result=result, error=None, job_id=job_id,
                       started_at=started_at, finished_at=started_at, node=node, pod=pod)
    write_text_atomic(store.layout.job_dir(job_id) / "result.json", report.model_dump_json())


def _pod(name: str, job_id: str, phase: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"{name}-x", "labels": {"job-name": name},
                         "annotations": {naming.ANNOTATION_JOB_ID: job_id},
                         "ownerReferences": [{"kind": "Job", "name": name}]},
            "spec": {"nodeName": "n1"}, "status": {"phase": phase, **status}}


# ----------------------------------------------------------------- the cap


def test_the_cap_is_counted_from_the_view_without_an_api_call(store: JobStore) -> None:
    executor = KubernetesExecutor(store, Settings(namespace="ns", max_concurrent_jobs=2),
                                  FakeBatch(), FakeCore(), submit=lambda task: task())
    assert executor.free_slots() == 0  # nothing listed yet: the count is not known
    running = {"metadata": {"name": "qf-other", "finalizers": [naming.FINALIZER]},
               "status": {}}
    finished = {"metadata": {"name": "qf-done"}, "status": {"succeeded": 1}}
    executor.tracker.jobs_listed([running, finished], 0.0)
    assert executor.free_slots() == 1
    executor.launch(claim(store))  # created, and not yet seen by the watch: counts
    assert executor.free_slots() == 0
    executor.tracker.job_event("MODIFIED", {**running, "status": {"succeeded": 1}})
    assert executor.free_slots() == 1
    assert executor.batch.calls == ["create"]


def test_a_transient_refusal_gives_the_job_back_and_pauses_launches(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    error = ApiException(status=429, reason="Too Many Requests")
    error.headers = {"Retry-After": "2"}
    executor.batch.create_error = error
    executor.launch(claimed)
    (outcome,) = executor.collect()
    assert outcome.requeue and outcome.job_id == claimed.record.job_id
    assert executor.active() == set() and executor.core.events == []
    assert executor.free_slots() == 0  # backing off, at least the Retry-After
    assert 1.5 < executor.backoff.remaining() <= 2.0
    assert executor.unfinished_jobs() == 0  # the refused create holds no slot


@pytest.mark.parametrize("error", [ApiException(status=503, reason="Service Unavailable"),
                                   ConnectionRefusedError(111, "Connection refused")])
def test_no_answer_or_5xx_gives_the_job_back(store: JobStore, executor: KubernetesExecutor,
                                             error: Exception) -> None:
    executor.batch.create_error = error
    executor.launch(claim(store))
    (outcome,) = executor.collect()
    assert outcome.requeue


def test_a_refused_create_fails_the_job_with_the_api_servers_message(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.batch.create_error = ApiException(status=403, reason="Forbidden")
    executor.batch.create_error.body = '{"message": "jobs.batch is forbidden: no"}'
    executor.launch(claimed)
    (outcome,) = executor.collect()
    assert outcome.error is not None and outcome.error.type == ErrorType.infrastructure_error
    assert re.search(re.escape("403 Forbidden: jobs.batch is forbidden: no"),
                     outcome.error.message)
    assert executor.active() == set() and executor.batch.patches == []


def test_already_exists_means_launched_once(store: JobStore,
                                            executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    executor.launch(claimed)
    assert executor.batch.creates == 2 and len(executor.batch.jobs) == 1
    assert executor.active() == {claimed.record.job_id}
    assert executor.collect() == []


def test_a_job_of_another_release_with_the_same_name_is_not_adopted(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    name = naming.job_name(claimed.record.job_id)
    executor.batch.jobs[name] = {"metadata": {"name": name, "labels": {
        naming.LABEL_INSTANCE: "other"}}, "status": {}}
    executor.launch(claimed)
    (outcome,) = executor.collect()
    assert outcome.error is not None and "release 'other'" in outcome.error.message
    assert executor.batch.patches == []  # the other release's Job is left alone


# ------------------------------------------------------- a job's whole life


def _clocked(store: JobStore, **settings: Any) -> tuple[KubernetesExecutor, list[float]]:
    now = [1000.0]
    executor = KubernetesExecutor(store, Settings(namespace="ns", **settings), FakeBatch(),
                                  FakeCore(), submit=lambda task: task(),
                                  clock=lambda: now[0])
    executor.tracker.jobs_listed([], 0.0)
    return executor, now


def test_a_jobs_life_costs_two_writes_its_create_and_its_deletion(store: JobStore) -> None:
    """The bare loop's cost: the Job's create, and its deletion by the controller
    JOB_KEEP_SECONDS after the outcome is in the store; no finalizer, no TTL, no Event
    on a success, no read. The success is judged from the pod's own Succeeded phase,
    before the Job controller has counted it."""
    executor, now = _clocked(store, job_keep_seconds=300)
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    job = executor.batch.jobs[name]
    assert "finalizers" not in job["metadata"] and "ttlSecondsAfterFinished" not in job["spec"]
    assert job["metadata"]["labels"][naming.LABEL_INSTANCE] == "qforge"
    executor.tracker.job_event("ADDED", job)
    _succeed(store, record.job_id)
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Succeeded"))
    scheduler.run_once()
    assert store.read(record.job_id).status is Status.COMPLETED
    executor.tracker.job_event("MODIFIED", {**job, "status": {"succeeded": 1}})
    scheduler.run_once()
    now[0] += 299
    scheduler.run_once()
    assert "delete" not in executor.batch.calls  # kept: `kubectl get jobs` shows it
    now[0] += 1
    scheduler.run_once()
    assert executor.batch.calls == ["create", "delete"] and executor.core.events == []
    assert dict(executor.requests) == {"create jobs": 1, "delete jobs": 1}


def test_an_event_in_flight_after_the_deletion_deletes_nothing_twice(
        store: JobStore) -> None:
    """The Job's last status update can arrive after the controller's delete: the Job
    stays in clean-up until the watch shows it gone."""
    executor, _ = _clocked(store, job_keep_seconds=0)
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    job = executor.batch.jobs[name]
    _succeed(store, record.job_id)
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Succeeded"))
    scheduler.run_once()
    scheduler.run_once()
    assert executor.batch.calls == ["create", "delete"]
    late = {**job, "metadata": {k: v for k, v in job["metadata"].items()
                                if k != "deletionTimestamp"}, "status": {"succeeded": 1}}
    executor.tracker.job_event("MODIFIED", late)  # sent before the deletion took effect
    scheduler.run_once()
    executor.tracker.job_event("DELETED", job)
    scheduler.run_once()
    assert executor.batch.calls == ["create", "delete"]


def test_success_events_are_a_setting_failures_always_get_one(store: JobStore) -> None:
    executor, _ = _clocked(store, success_events=True)
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    _succeed(store, record.job_id)
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Succeeded"))
    scheduler.run_once()
    assert [e["reason"] for e in executor.core.events] == [events.REASON_COMPLETED]


def test_a_job_is_never_deleted_before_its_outcome_is_recorded(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    executor.tracker.job_event("ADDED", {**executor.batch.jobs[name],
                                         "status": {"succeeded": 1}})
    executor.record_done(claimed.record.job_id, name)  # record still RUNNING
    fresh = make_executor(store, job_keep_seconds=0)  # nor by a controller sweeping
    fresh.api.batch = executor.batch
    fresh.tracker.jobs_listed([{**executor.batch.jobs[name], "status": {"succeeded": 1}}],
                              0.0)
    fresh.collect()
    assert executor.batch.calls == ["create"]


def test_a_crash_between_recording_and_the_deletion_is_swept_at_the_next_listing(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    store.queue.finish(claimed, claimed.record.evolve(status=Status.COMPLETED))
    job = executor.batch.jobs[name]
    job["status"] = {"succeeded": 1}
    fresh = make_executor(store, job_keep_seconds=0)  # a new controller: tracks nothing
    fresh.api.batch = executor.batch
    fresh.tracker.jobs_listed([job], 0.0)
    fresh.collect()
    assert executor.batch.calls == ["create", "delete"]


# With TTL_SECONDS_AFTER_FINISHED set, Kubernetes' TTL controller deletes the Jobs and
# qforge's finalizer guards their outcome (as before JOB_KEEP_SECONDS).
TTL = {"ttl_seconds_after_finished": 3600, "success_events": True}


def test_with_a_ttl_a_jobs_life_costs_three_writes_and_no_read(store: JobStore) -> None:
    """Create, one Event on the outcome, the finalizer off once the outcome is in the
    store. The success is judged from the pod's own Succeeded phase, before the Job
    controller has counted it."""
    executor = make_executor(store, **TTL)
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    job = executor.batch.jobs[name]
    assert job["metadata"]["finalizers"] == [naming.FINALIZER]
    assert job["metadata"]["labels"][naming.LABEL_INSTANCE] == "qforge"
    executor.tracker.job_event("ADDED", job)
    _succeed(store, record.job_id)
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Succeeded"))
    scheduler.run_once()
    assert store.read(record.job_id).status is Status.COMPLETED
    assert executor.batch.patches == []  # not before the record is written
    scheduler.run_once()
    assert [n for n, _ in executor.batch.patches] == [name]
    assert executor.batch.jobs[name]["metadata"]["finalizers"] == []
    assert [e["reason"] for e in executor.core.events] == [events.REASON_COMPLETED]
    writes = executor.batch.calls.count("create") + executor.batch.calls.count("patch") \
        + len(executor.core.events)
    assert writes == 3 and "get" not in executor.batch.calls
    assert dict(executor.requests) == {"create jobs": 1, "create events": 1,
                                       "patch jobs": 1}


def test_launch_events_are_a_setting(store: JobStore) -> None:
    executor = make_executor(store, launch_events=True)
    executor.launch(claim(store))
    assert [e["reason"] for e in executor.core.events] == [events.REASON_LAUNCHED]


def test_finalizer_stays_until_the_record_is_terminal(store: JobStore) -> None:
    executor = make_executor(store, **TTL)
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    executor.record_done(claimed.record.job_id, name)  # record still RUNNING
    assert executor.batch.patches == []


def test_a_crash_between_recording_and_the_finalizer_is_swept_at_the_next_listing(
        store: JobStore) -> None:
    executor = make_executor(store, **TTL)
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    store.queue.finish(claimed, claimed.record.evolve(status=Status.COMPLETED))
    job = executor.batch.jobs[name]
    job["status"] = {"succeeded": 1}
    fresh = make_executor(store, **TTL)  # a new controller: tracks nothing
    fresh.api.batch = executor.batch
    fresh.tracker.jobs_listed([job], 0.0)
    fresh.collect()
    assert [n for n, _ in executor.batch.patches] == [name]
    assert "delete" not in executor.batch.calls  # the TTL's part


# ---------------------------------------------------------------- adoption


def test_adoption_reads_the_view_not_the_api(store: JobStore,
                                             executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    name = naming.job_name(claimed.record.job_id)
    executor.tracker.jobs_listed([{"metadata": {"name": name, "finalizers": [naming.FINALIZER],
                                        "annotations": {naming.ANNOTATION_JOB_ID:
                                                        claimed.record.job_id}},
                           "status": {}}], 0.0)
    assert executor.adopt(claimed)
    assert executor.batch.calls == [] and executor.active() == {claimed.record.job_id}


def test_a_job_that_finished_while_no_controller_ran_is_read_once_at_adoption(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """No finalizer keeps a finished Job's body in the view: the new controller reads
    the Job once, and records its outcome from it (a failure, here)."""
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    job = executor.batch.jobs[name]
    job["status"] = {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    fresh = make_executor(store)  # a new controller, its first listing
    fresh.api.batch = executor.batch
    fresh.tracker.jobs_listed([job], 0.0)
    assert fresh.view.body(name) is None
    assert fresh.adopt(claimed)
    (outcome,) = fresh.collect()
    assert outcome.error is not None and outcome.error.type is ErrorType.timeout
    assert fresh.requests["get jobs"] == 1 and fresh.batch.creates == 1


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


def test_the_record_names_its_job_only_once_the_api_server_took_it(
        store: JobStore) -> None:
    """Found by the chaos test: a controller SIGKILLed between recording the placement
    and its create reaching the API server left a record naming a Job that never
    existed; the next controller took it for launched and deleted (and, with a
    result.json in the folder, COMPLETED a job that never ran)."""
    writes: list[Any] = []
    executor = KubernetesExecutor(store, Settings(namespace="ns"), FakeBatch(), FakeCore(),
                                  submit=writes.append)
    executor.tracker.jobs_listed([], 0.0)
    claimed = claim(store)
    executor.launch(claimed)
    assert executor.updates() == []  # the create is not answered: no Job named yet
    (create,) = writes
    create()
    (update,) = executor.updates()
    assert update.job_id == claimed.record.job_id
    assert update.placement is not None
    assert update.placement.k8s_job == naming.job_name(claimed.record.job_id)


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


# ---------------------------------------------------------------- verdicts


def _fail(job: dict[str, Any], reason: str) -> None:
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}


def test_failed_job_reads_its_pod_when_the_pod_watch_lags(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """The Job's Failed event came first; the watched pod still looks Running."""
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    pod = _pod(name, claimed.record.job_id, "Running")
    executor.tracker.pod_event("ADDED", pod)
    job = executor.batch.jobs[name]
    _fail(job, "BackoffLimitExceeded")
    executor.tracker.job_event("MODIFIED", job)
    executor.core.pods = [{**pod, "status": {"phase": "Failed", "containerStatuses": [
        {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}]
    (outcome,) = executor.collect()
    assert outcome.error is not None and outcome.error.type == ErrorType.resource_error
    assert [e["reason"] for e in executor.core.events] == [events.REASON_FAILED]


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
    executor.core.pods = [_pod(name, claimed.record.job_id, "Failed", containerStatuses=[
        {"state": {"terminated": {"reason": "Error", "exitCode": 1}}}])]
    job = executor.batch.jobs[name]
    _fail(job, "PodFailurePolicy")
    executor.tracker.job_event("MODIFIED", job)
    (outcome,) = executor.collect()
    assert outcome.error == report.error


def test_a_job_deleted_while_running_is_a_deletion_even_behind_the_finalizer(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    job = executor.batch.jobs[name]
    executor.tracker.job_event("ADDED", job)
    assert executor.collect() == []
    job["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    executor.tracker.job_event("MODIFIED", job)
    (outcome,) = executor.collect()
    assert outcome.error is not None and "deleted before it finished" in outcome.error.message


def test_a_deletion_the_watch_missed_is_found_by_the_next_listing(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    executor.tracker.job_event("ADDED", executor.batch.jobs[name])
    assert executor.collect() == []
    executor.tracker.jobs_listed([], 10.0)  # gone while the watch was reconnecting
    (outcome,) = executor.collect()
    assert outcome.error is not None and outcome.error.type == ErrorType.infrastructure_error


def test_the_safety_net_listing_is_due_only_while_jobs_are_tracked(
        store: JobStore, executor: KubernetesExecutor) -> None:
    assert not executor.resync_due(10_000)
    executor.launch(claim(store))
    assert not executor.resync_due(299) and executor.resync_due(300)


def test_forget_all_drops_every_tracked_job(store: JobStore,
                                            executor: KubernetesExecutor) -> None:
    executor.launch(claim(store))
    executor.forget_all()
    assert executor.active() == set() and executor.collect() == []


def test_idle_controller_makes_no_api_call_per_pass(store: JobStore,
                                                    executor: KubernetesExecutor) -> None:
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    for _ in range(10):
        scheduler.run_once()
    assert executor.batch.calls == [] and executor.requests == {}


def test_a_freed_slot_wakes_the_scheduler_even_for_a_job_already_recorded(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """The outcome was recorded from the pod's phase; the Job controller frees the slot
    later: that moment must wake the scheduler (the queue waits for that slot)."""
    import threading

    wake = threading.Event()
    executor.attach(wake)
    running = {"metadata": {"name": "qf-x", "finalizers": [naming.FINALIZER]}, "status": {}}
    executor.tracker.job_event("ADDED", running)
    assert not wake.is_set() and executor.unfinished_jobs() == 1
    executor.tracker.job_event("MODIFIED", {**running, "status": {"succeeded": 1}})
    assert wake.is_set() and executor.unfinished_jobs() == 0


def test_every_raw_answer_is_read_and_its_connection_handed_back(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """An unread raw answer keeps its connection: the next request would open a new one
    (a TLS handshake per request)."""
    released: list[bool] = []
    answer = SimpleNamespace(data=b"{}", release_conn=lambda: released.append(True))
    assert executor.api.call("get jobs", lambda: answer) is answer
    assert released == [True]


def test_the_runner_job_carries_the_records_group(store: JobStore,
                                                  executor: KubernetesExecutor) -> None:
    store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER, group="campaign-7")
    placement = Placement(executor="kubernetes", worker_id="worker_1", instance=INSTANCE)
    claimed = store.queue.claim(store.queue.queued()[0], INSTANCE, placement)
    assert claimed is not None and claimed.record.group == "campaign-7"
    executor.launch(claimed)
    (job,) = executor.batch.jobs.values()
    assert job["metadata"]["labels"]["qforge.io/group"] == "campaign-7"
    assert job["spec"]["template"]["metadata"]["labels"]["qforge.io/group"] == "campaign-7"


def test_a_pod_not_yet_scheduled_is_no_record_update(
        store: JobStore, executor: KubernetesExecutor) -> None:
    claimed = claim(store)
    executor.launch(claimed)
    name = naming.job_name(claimed.record.job_id)
    job_id = claimed.record.job_id
    executor.tracker.observe_job(executor.batch.jobs[name])
    unbound = _pod(name, job_id, "Pending")
    unbound["spec"] = {}
    executor.tracker.observe_pod(unbound)
    assert executor.updates() == []  # nothing to say yet: no write to the store
    executor.tracker.observe_pod(_pod(name, job_id, "Running"))
    (update,) = executor.updates()
    assert update.placement is not None and update.placement.node == "n1"
    assert update.placement.pod == f"{name}-x"
    assert executor.updates() == []  # said once


def test_a_success_is_taken_from_result_json_before_the_pod_ends(
        store: JobStore, executor: KubernetesExecutor) -> None:
    """The runner renames result.json into place last: the outcome is in once it is
    there, without waiting the kubelet's 1-2 s to report the pod Succeeded; the slot is
    still counted until the Job's own status frees it."""
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    executor.tracker.job_event("ADDED", executor.batch.jobs[name])
    unbound = _pod(name, record.job_id, "Pending")
    unbound["spec"] = {}
    executor.tracker.pod_event("MODIFIED", unbound)
    _succeed(store, record.job_id, started_at=utcnow())
    assert executor.look_for_results() == 0  # its pod is on no node: nothing looked at
    # on its node, still Pending: a short runner is over before the kubelet says Running
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Pending"))
    assert executor.look_for_results() == 1
    scheduler.run_once()
    final = store.read(record.job_id)
    assert final.status is Status.COMPLETED and final.placement is not None
    assert final.placement.node == "n1"
    assert executor.unfinished_jobs() == 1  # the pod still runs: its slot stays taken
    assert executor.core.events == []  # a success's Event is a setting (SUCCESS_EVENTS)


def test_a_result_left_by_an_earlier_attempt_or_a_failure_waits_for_the_pod(
        store: JobStore, executor: KubernetesExecutor) -> None:
    scheduler = Scheduler(store, executor, Settings(namespace="ns"), instance=INSTANCE)
    scheduler.start()
    record = store.submit(JobSpec(molecule=parse_xyz(WATER)), input_text=WATER)
    _succeed(store, record.job_id)  # written before this launch (started 2026-01-01)
    scheduler.run_once()
    name = naming.job_name(record.job_id)
    executor.tracker.job_event("ADDED", executor.batch.jobs[name])
    executor.tracker.pod_event("MODIFIED", _pod(name, record.job_id, "Running"))
    assert executor.look_for_results() == 1
    scheduler.run_once()
    assert store.read(record.job_id).status is Status.RUNNING
    assert executor.look_for_results() == 0  # looked at once
