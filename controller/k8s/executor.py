"""The Kubernetes executor: one batch/v1 Job per calculation.

The scheduling core calls it from the poller thread; kopf's watch handlers feed it the
Jobs' and pods' latest state (`observe_job`, `observe_pod`, `job_deleted`) from the
event loop. Everything shared between the two sides is behind one lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller.k8s import autoscaling, events, naming
from controller.k8s.manifests import build_job_manifest
from controller.k8s.status import PodView, failure_error, job_finished, pod_view
from controller.record import Placement
from controller.scheduling.executor import Outcome, Update
from controller.settings import Settings
from controller.store.jobstore import Claimed, JobStore, load_result_json
from runner_image.result import ErrorType, JobError, RunReport

log = logging.getLogger("controller.k8s")

# While Jobs run and nothing is queued, their list is re-read this often (a safety net
# for a deletion the watch missed); never when nothing is tracked.
RESYNC_SECONDS = 60.0


@dataclass
class _Tracked:
    claimed: Claimed
    name: str
    job: dict[str, Any] | None = None
    pod: PodView | None = None
    deleted: bool = False
    cancelled: bool = False
    requeue: bool = False  # the API server did not take the Job: back to the queue
    pending_since: float | None = None  # its pod unschedulable since (clock)
    unfit: str | None = None  # the autoscaler's word: no node it can make fits the pod
    last_update: tuple[Any, ...] = field(default_factory=tuple)


class KubernetesExecutor:
    kind = "kubernetes"

    def __init__(self, store: JobStore, settings: Settings, batch_api: Any, core_api: Any,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.batch = batch_api
        self.core = core_api
        self.namespace = settings.namespace
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._wake: threading.Event | None = None
        self._clock = clock
        self._listed_at = clock()
        self.unfit_pods = autoscaling.UnfitPods(core_api, self.namespace, clock)

    def attach(self, wake: threading.Event) -> None:
        self._wake = wake

    # ----------------------------------------------------------- core calls
    def unfinished_jobs(self) -> int:
        """qforge Jobs that exist and are unfinished in the cluster (the cap counts
        these, not an in-memory counter: it holds across restarts and replicas).

        One LIST, made only when jobs are queued (the scheduler asks only then)."""
        listed = [_as_dict(j) for j in self.batch.list_namespaced_job(
            self.namespace, label_selector=naming.selector()).items]
        self._listed_at = self._clock()
        # The list doubles as a resync of the watch: a missed event cannot strand a job.
        names = set()
        for job in listed:
            self.observe_job(job)
            names.add((job.get("metadata") or {}).get("name"))
        with self._lock:
            for t in self._tracked.values():
                if t.job is not None and t.name not in names:
                    t.deleted = True
        return sum(1 for j in listed if job_finished(j) is None)

    def free_slots(self) -> int:
        return max(0, self.settings.max_concurrent_jobs - self.unfinished_jobs())

    def launch(self, claimed: Claimed) -> None:
        """Create the claimed job's Job. "Already exists" means launched (the name is a
        function of the job id and attempt). A transient API failure (no answer, 429,
        5xx) gives the job back to the queue at the next collect; any other refusal
        (403, 422, ...) raises, and the scheduler fails the job with that reason."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        record = claimed.record
        manifest = build_job_manifest(record.job_id, record.spec, self.settings,
                                      attempt=max(1, record.attempts))
        name = manifest["metadata"]["name"]
        with self._lock:
            self._tracked[record.job_id] = _Tracked(claimed, name)
        try:
            created = self.batch.create_namespaced_job(self.namespace, manifest)
        except ApiException as exc:
            if exc.status == 409:  # already exists = already launched
                log.info("Job %s: Kubernetes Job %s already exists", record.job_id, name)
                return
            if _transient(exc.status):
                self._give_back(record.job_id, f"{exc.status} {exc.reason}")
                return
            with self._lock:
                del self._tracked[record.job_id]
            raise RuntimeError(f"creating Job {name}: {exc.status} {exc.reason}: "
                               f"{_api_message(exc)}") from None
        except (OSError, NoAnswer) as exc:  # no answer from the API server
            self._give_back(record.job_id, f"{type(exc).__name__}: {exc}")
            return
        self._event(name, created.metadata.uid, "Launched", events.launched_message(
            record.job_id, record.spec.method.value, record.spec.task.value,
            record.spec.molecule.formula))

    def _give_back(self, job_id: str, why: str) -> None:
        log.warning("Job %s: the API server did not take its Job (%s); back in the queue",
                    job_id, why)
        with self._lock:
            t = self._tracked.get(job_id)
            if t is not None:
                t.requeue = True
        if self._wake is not None:
            self._wake.set()

    def adopt(self, claimed: Claimed) -> bool:
        """After a restart (or a change of leader): track the claimed job's Job again.

        When the cluster has no such Job, the store tells which crash window we are in:
        a record that names its Job was launched, and the Job is gone (deleted, or
        removed by its TTL while no controller ran): its verdict follows from result.json
        or the deletion. A record that does not name it yet was claimed and the
        controller stopped around the create: create it now (the same deterministic
        name: if the create had gone through after all, "already exists" = launched)."""
        from kubernetes.client.exceptions import ApiException

        record = claimed.record
        name = naming.job_name(record.job_id, max(1, record.attempts))
        try:
            job = self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            recorded = record.placement.k8s_job if record.placement else None
            if recorded == name:
                with self._lock:
                    self._tracked[record.job_id] = _Tracked(claimed, name, deleted=True)
                return True
            self.launch(claimed)
            return True
        with self._lock:
            self._tracked[record.job_id] = _Tracked(claimed, name, job=_as_dict(job))
        return True

    def cancel(self, job_id: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            tracked = self._tracked.get(job_id)
            if tracked is None:
                return False
            tracked.cancelled = True
            name = tracked.name
        try:
            self.batch.delete_namespaced_job(name, self.namespace,
                                             propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
        return True

    def active(self) -> set[str]:
        with self._lock:
            return set(self._tracked)

    def collect(self) -> list[Outcome]:
        # The watch feeds the tracked Jobs' states. A Job deleted while kopf's watch was
        # reconnecting sends no event: while Jobs are tracked and nothing made us list
        # them lately (the cap lists them whenever jobs are queued), list them again.
        with self._lock:
            tracking = bool(self._tracked)
        if tracking and self._clock() - self._listed_at >= RESYNC_SECONDS:
            self.unfinished_jobs()
        self._note_unfit()
        outcomes: list[Outcome] = []
        with self._lock:
            items = list(self._tracked.items())
        for job_id, t in items:
            outcome = self._verdict(job_id, t)
            if outcome is not None:
                outcomes.append(outcome)
                with self._lock:
                    self._tracked.pop(job_id, None)
        return outcomes

    def updates(self) -> list[Update]:
        out: list[Update] = []
        with self._lock:
            for job_id, t in self._tracked.items():
                placement = Placement(
                    executor="kubernetes", worker_id=self.settings.worker_id,
                    instance=t.claimed.marker.instance, k8s_job=t.name,
                    pod=t.pod.name if t.pod else None, node=t.pod.node if t.pod else None)
                waiting = t.pod.waiting_reason if t.pod else None
                key = (placement, waiting)
                if key != t.last_update:
                    t.last_update = key
                    out.append(Update(job_id, placement=placement, waiting_reason=waiting))
        return out

    def shutdown(self) -> list[Outcome]:
        """The controller stops; its Jobs keep running in the cluster and are adopted
        by the next controller."""
        return []

    # --------------------------------------------------------- watch feeds
    def observe_job(self, body: dict[str, Any]) -> None:
        job_id = naming.job_id_from_metadata(body.get("metadata") or {})
        if job_id is None:
            return
        with self._lock:
            t = self._tracked.get(job_id)
            if t is not None and (body.get("metadata") or {}).get("name") == t.name:
                t.job = body
                if job_finished(body) and self._wake is not None:
                    self._wake.set()

    def job_deleted(self, body: dict[str, Any]) -> None:
        job_id = naming.job_id_from_metadata(body.get("metadata") or {})
        with self._lock:
            t = self._tracked.get(job_id or "")
            if t is not None and (body.get("metadata") or {}).get("name") == t.name:
                t.deleted = True
                if self._wake is not None:
                    self._wake.set()

    def observe_pod(self, body: dict[str, Any]) -> None:
        job_id = naming.job_id_from_metadata(body.get("metadata") or {})
        if job_id is None:
            return
        owner = [o.get("name") for o in (body.get("metadata") or {}).get("ownerReferences") or []
                 if o.get("kind") == "Job"]
        with self._lock:
            t = self._tracked.get(job_id)
            if t is not None and (not owner or owner[0] == t.name):
                t.pod = pod_view(body)
                if not t.pod.unschedulable:
                    t.pending_since = None
                elif t.pending_since is None:
                    t.pending_since = self._clock()

    # ------------------------------------------------------------ verdicts
    def _verdict(self, job_id: str, t: _Tracked) -> Outcome | None:
        if t.requeue:
            return Outcome(job_id, requeue=True)
        state = job_finished(t.job) if t.job else None
        if state is not None and t.pod is None:  # ended before its pod was ever seen
            t.pod = self._final_pod(t)
        placement = Placement(executor="kubernetes", worker_id=self.settings.worker_id,
                              instance=t.claimed.marker.instance, k8s_job=t.name,
                              pod=t.pod.name if t.pod else None,
                              node=t.pod.node if t.pod else None)
        if t.cancelled:
            return Outcome(job_id, placement=placement, error=JobError(
                type=ErrorType.cancelled, message="cancelled by user; its Kubernetes Job "
                                                  f"{t.name} was deleted"))
        report = self._report(job_id) if state or t.deleted else None
        if state == "Complete" or (t.deleted and state is None and report is not None):
            if report is not None and report.success:
                self._event(t.name, _uid(t.job), "Completed", events.completed_message(
                    job_id, report.result.energy if report.result else None,
                    report.result.gap if report.result else None))
                return Outcome(job_id, report=report, placement=placement)
            error = (report.error if report and report.error else JobError(
                type=ErrorType.infrastructure_error,
                message=f"Kubernetes Job {t.name} completed but the runner wrote no "
                        "readable result.json"))
            self._failed_event(t, job_id, error)
            return Outcome(job_id, error=error, placement=placement)
        if t.unfit is not None and state is None and not t.deleted:
            return self._fail_unfit(job_id, t, placement)
        if state == "Failed" and t.job is not None:
            error = failure_error(t.job, self._final_pod(t), report)
            self._failed_event(t, job_id, error)
            return Outcome(job_id, error=error, placement=placement)
        if t.deleted:
            if self.store.cancel_requested(job_id):
                return Outcome(job_id, placement=placement, error=JobError(
                    type=ErrorType.cancelled, message="cancelled by user"))
            return Outcome(job_id, placement=placement, error=JobError(
                type=ErrorType.infrastructure_error,
                message=f"its Kubernetes Job {t.name} was deleted before it finished"))
        return None

    def _note_unfit(self) -> None:
        """Mark the jobs whose pod fits no node the autoscaler can make (bounded reads of
        pod Events: see autoscaling.UnfitPods)."""
        with self._lock:
            pending = {t.pod.name: t.pending_since for t in self._tracked.values()
                       if t.pod is not None and t.pending_since is not None}
        if not pending:
            return
        unfit = self.unfit_pods.check(pending)
        with self._lock:
            for t in self._tracked.values():
                if t.pod is not None and t.pod.name in unfit and t.pending_since is not None:
                    t.unfit = unfit[t.pod.name]

    def _fail_unfit(self, job_id: str, t: _Tracked, placement: Placement) -> Outcome:
        """The pod can never be placed: delete its Job (and pod), fail the job."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch.delete_namespaced_job(t.name, self.namespace,
                                             propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                log.warning("Job %s: could not delete Job %s: %s", job_id, t.name, exc.reason)
        error = JobError(type=ErrorType.resource_error, message=(
            "its requests fit no node the cluster autoscaler can make; submit with a "
            f"smaller --cpu or --memory (Karpenter: {t.unfit})"))
        self._failed_event(t, job_id, error)
        return Outcome(job_id, error=error, placement=placement)

    def _final_pod(self, t: _Tracked) -> PodView | None:
        """The failed Job's pod as it ended. The pod and Job watches are two streams: the
        Job's Failed event can arrive before the pod's own last update (OOMKilled, exit
        code), so when the watched pod has not ended yet it is read once from the API."""
        if t.pod is not None and t.pod.phase in ("Failed", "Succeeded"):
            return t.pod
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"batch.kubernetes.io/job-name={t.name}")
        except ApiException as exc:
            log.warning("Job %s: could not read its pods: %s", t.name, exc.reason)
            return t.pod
        views = [pod_view(_as_dict(p)) for p in pods.items]
        ended = [v for v in views if v.phase in ("Failed", "Succeeded")]
        if ended or views:
            return (ended or views)[-1]
        return t.pod

    def forget_all(self) -> None:
        """Stop tracking everything (this controller lost the Lease: the new leader
        adopts the Jobs, and this one adopts them again if it leads once more)."""
        with self._lock:
            self._tracked.clear()

    def _report(self, job_id: str) -> RunReport | None:
        data = load_result_json(self.store.layout.job_dir(job_id))
        if data is None:
            return None
        try:
            return RunReport.model_validate(data)
        except ValidationError:
            return None

    def _failed_event(self, t: _Tracked, job_id: str, error: JobError) -> None:
        self._event(t.name, _uid(t.job), "Failed",
                    events.failed_message(job_id, error.type, error.message), warning=True)

    def _event(self, name: str, uid: str | None, reason: str, message: str,
               *, warning: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        body = events.build_event(job_name=name, namespace=self.namespace, reason=reason,
                                  message=message, now=datetime.now(UTC), job_uid=uid,
                                  event_type="Warning" if warning else "Normal")
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:  # an Event is best effort; never fail a job for it
            log.warning("Could not post Event %s on Job %s: %s", reason, name, exc.reason)


def _transient(status: int | None) -> bool:
    """API answers worth trying again later: none at all, too many requests, 5xx."""
    return not status or status == 429 or status >= 500


def _api_message(exc: Any) -> str:
    """The `message` of the API server's Status body, else the raw body."""
    body = getattr(exc, "body", None) or ""
    try:
        return str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        return str(body)


def _uid(job: dict[str, Any] | None) -> str | None:
    if not job:
        return None
    uid = (job.get("metadata") or {}).get("uid")
    return str(uid) if uid else None


def _as_dict(obj: Any) -> dict[str, Any]:
    """A kubernetes-client model as the plain dict the API returns (camelCase keys)."""
    if isinstance(obj, dict):
        return obj
    from kubernetes.client import ApiClient

    data = ApiClient().sanitize_for_serialization(obj)
    return data if isinstance(data, dict) else {}
