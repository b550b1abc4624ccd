"""The Kubernetes executor: one batch/v1 Job per calculation.

The scheduling core calls it from the poller thread. Two list-then-watch threads
(controller/k8s/watch.py) feed it the release's runner Jobs and pods
(`jobs_listed`/`observe_job`/`job_deleted`, `pods_listed`/`observe_pod`); a small pool
of writer threads makes the API writes (Job creates, Events, finalizer removals), so the
scheduling thread never waits on the API. Everything shared is behind one lock.

The API budget of a job in steady state: one create, one Event on its outcome, one patch
taking qforge's finalizer off once the outcome is in the store; no LIST and no read
(the cap is counted from the watch-fed view, controller/k8s/view.py). Every request
passes one token bucket (KUBE_API_QPS / KUBE_API_BURST); a 429, a 5xx or no answer
gives the job back to the queue and pauses launches (Retry-After, else doubling).
With an autoscaler, one bounded LIST of pod Events while runner pods stay unschedulable
(controller/k8s/autoscaling.py): a pod no node can fit fails its job.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qforge.k8s import autoscaling, events, naming
from qforge.k8s.manifests import build_job_manifest
from qforge.k8s.status import PodView, failure_error, job_end_state, pod_view
from qforge.k8s.throttle import Backoff, TokenBucket, retry_after_seconds, transient
from qforge.k8s.view import JobView
from qforge.record import JobRecord, Placement
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.store.jobstore import (
    Claimed,
    CorruptRecord,
    JobNotFound,
    JobStore,
    load_report,
)
from qforge_runner.result import ErrorType, JobError, RunReport

log = logging.getLogger(__name__)

# How long adoption waits for the first full listing of the release's Jobs.
SYNC_TIMEOUT = 60.0
# The early look for result.json of Jobs whose pod runs: this often, and at most this
# many looks (a stat on the job store) a second in all, however many pods run.
RESULT_EVERY = 0.25
RESULT_LOOKS_PER_SECOND = 200

Submit = Callable[[Callable[[], None]], None]


@dataclass
class _Tracked:
    claimed: Claimed
    name: str
    seen: bool = False  # the view has shown this Job at least once
    created: bool = False  # the API server took its create (or said it exists)
    deleted: bool = False
    cancelled: bool = False
    requeue: bool = False  # the API server did not take the Job: back to the queue
    refused: JobError | None = None  # the API server refused the Job: the job fails
    dirty: bool = True  # something changed since its last verdict
    pending_since: float | None = None  # its pod unschedulable since (clock)
    unfit: str | None = None  # the autoscaler's word: no node it can make fits the pod
    result_seen: bool = False  # its pod is on a node and result.json is in its folder
    last_update: tuple[Any, ...] = field(default_factory=tuple)


class KubernetesExecutor:
    kind = "kubernetes"
    others_may_recover = False  # runner Jobs outlive the controller: it adopts them

    def __init__(self, store: JobStore, settings: Settings, batch_api: Any, core_api: Any,
                 *, clock: Callable[[], float] = time.monotonic,
                 submit: Submit | None = None) -> None:
        self.store = store
        self.settings = settings
        self.batch = batch_api
        self.core = core_api
        self.namespace = settings.namespace
        self.release = settings.release
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._by_name: dict[str, str] = {}  # Job name -> job id, of tracked jobs
        self._pods: dict[str, PodView] = {}  # Job name -> its pod, for Jobs that matter
        self._to_release: list[tuple[str, str]] = []  # (job id, Job name) recorded
        self._sweep: set[str] = set()  # untracked Jobs still carrying the finalizer
        self._releasing: set[str] = set()  # Jobs whose finalizer is being taken off
        self._wake: threading.Event | None = None
        self._clock = clock
        self._closed = threading.Event()
        self._results: threading.Thread | None = None
        self._next_look = 0  # round-robin offset of the result looks
        self.view = JobView()
        self.synced = threading.Event()
        self.bucket = TokenBucket(settings.kube_api_qps, settings.kube_api_burst)
        self.backoff = Backoff(clock=clock)
        self.requests: Counter[str] = Counter()  # "verb resource" -> count
        self.unfit_pods = autoscaling.UnfitPods(self._list_pod_events, clock)
        self._pool: ThreadPoolExecutor | None = None
        if submit is None:
            self._pool = ThreadPoolExecutor(settings.kube_api_writers,
                                            thread_name_prefix="api-writer")
            pool = self._pool

            def submit(task: Callable[[], None]) -> None:
                pool.submit(_logged, task)
        self._submit = submit

    def attach(self, wake: threading.Event) -> None:
        self._wake = wake
        if self._results is None and self._pool is not None:  # not under unit tests
            self._results = threading.Thread(target=self._watch_results, daemon=True,
                                             name="result-looks")
            self._results.start()

    # ---------------------------------------------------------- early results
    def _watch_results(self) -> None:
        while not self._closed.wait(RESULT_EVERY):
            try:
                self.look_for_results()
            except Exception:  # never dies of one look
                log.exception("Looking for result.json failed")

    def look_for_results(self) -> int:
        """A job's result is in the store the moment its runner renames result.json
        into place (last, after every other file). The pod's Succeeded phase comes
        1-2 s later (the kubelet notices the exit at its next relist, then reports).
        So the folders of Jobs whose pod is on its node and has not ended are looked
        at (a short runner is over before the kubelet reports the pod Running), a
        bounded number each time: a success found there is that job's outcome at once
        (the slot is still counted until the Job's own status frees it). Returns the
        looks made."""
        with self._lock:
            running = [(job_id, t.name) for job_id, t in self._tracked.items()
                       if not t.result_seen and not t.cancelled
                       and (pod := self._pods.get(t.name)) is not None
                       and pod.node is not None and pod.phase in ("Pending", "Running")]
        if not running:
            return 0
        budget = max(1, int(RESULT_LOOKS_PER_SECOND * RESULT_EVERY))
        start = self._next_look % len(running)
        batch = (running[start:] + running[:start])[:budget]
        self._next_look = start + len(batch)
        found = [(job_id, name) for job_id, name in batch
                 if (self.store.layout.job_dir(job_id) / "result.json").exists()]
        if found:
            with self._lock:
                for job_id, name in found:
                    t = self._tracked.get(job_id)
                    if t is not None and t.name == name:
                        t.result_seen = True
                        t.dirty = True
            self._poke()
        return len(batch)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _api(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Every request of the executor: counted, and through the token bucket."""
        self.bucket.acquire()
        with self._lock:
            self.requests[what] += 1
        result = call(*args, **kwargs)
        release = getattr(result, "release_conn", None)
        if release is not None:  # a raw answer: read it whole, hand the connection back
            _ = result.data  # (unread, it would keep its connection: a new TLS handshake
            release()  # for every request)
        return result

    def resync_due(self, age: float) -> bool:
        """The watch's safety net: a full LIST once KUBE_RESYNC_SECONDS have passed since
        the last, and only while this controller tracks Jobs."""
        with self._lock:
            tracking = bool(self._tracked)
        return tracking and age >= self.settings.kube_resync_seconds

    # ----------------------------------------------------------- core calls
    def unfinished_jobs(self) -> int:
        """The release's Jobs that hold a slot (unfinished in the cluster, or created and
        not yet seen by the watch). From the watch-fed view: no API call."""
        with self._lock:
            return self.view.unfinished()

    def free_slots(self) -> int:
        if not self.synced.is_set() or self.backoff.remaining() > 0:
            return 0  # the cluster's count is not known yet, or the API said "not now"
        return max(0, self.settings.max_concurrent_jobs - self.unfinished_jobs())

    def launch(self, claimed: Claimed) -> None:
        """Create the claimed job's Job (in a writer thread). "Already exists" means
        launched (the name is a function of the job id and attempt). A transient API
        failure (no answer, 429, 5xx) gives the job back to the queue; any other refusal
        (403, 422, ...) fails the job with the API server's reason."""
        record = claimed.record
        manifest = build_job_manifest(record.job_id, record.spec, self.settings,
                                      attempt=max(1, record.attempts), group=record.group)
        name = manifest["metadata"]["name"]
        with self._lock:
            self._track(_Tracked(claimed, name))
            self.view.expect(name, self._clock())
        self._submit(lambda: self._create(record.job_id, name, manifest))

    def _track(self, t: _Tracked) -> None:
        self._tracked[t.claimed.record.job_id] = t
        self._by_name[t.name] = t.claimed.record.job_id

    def _create(self, job_id: str, name: str, manifest: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        try:
            resp = self._api("create jobs", self.batch.create_namespaced_job,
                             self.namespace, manifest, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:  # already exists = already launched (if it is ours)
                self.backoff.succeeded()
                self._already_exists(job_id, name)
                return
            with self._lock:
                self.view.unexpect(name)
            if transient(exc.status):
                delay = self.backoff.failed(retry_after_seconds(exc.headers))
                self._give_back(job_id, f"{exc.status} {exc.reason}", delay)
                return
            self._refuse(job_id, f"creating Job {name}: {exc.status} {exc.reason}: "
                                 f"{_api_message(exc)}")
            return
        except (OSError, NoAnswer) as exc:  # no answer from the API server
            with self._lock:
                self.view.unexpect(name)
            delay = self.backoff.failed()
            self._give_back(job_id, f"{type(exc).__name__}: {exc}", delay)
            return
        with self._lock:
            self.view.created(name, self._clock())
            self._mark_created(job_id)
        self.backoff.succeeded()
        if self.settings.launch_events:
            uid = (_json(resp).get("metadata") or {}).get("uid")
            record = self._tracked_record(job_id)
            if record is not None:
                self._event(name, uid, events.REASON_LAUNCHED, events.launched_message(
                    job_id, record.spec.method.value, record.spec.task.value,
                    record.spec.molecule.formula))

    def _mark_created(self, job_id: str) -> None:
        t = self._tracked.get(job_id)
        if t is not None:
            t.created = True
            t.dirty = True

    def _tracked_record(self, job_id: str) -> Any:
        with self._lock:
            t = self._tracked.get(job_id)
            return t.claimed.record if t else None

    def _already_exists(self, job_id: str, name: str) -> None:
        """A Job of that name exists: launched, unless another release owns it (two
        stores that hold the same job id): then this job fails, the other is untouched."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self._api("get jobs", self.batch.read_namespaced_job, name,
                             self.namespace, _preload_content=False)
        except ApiException as exc:
            log.warning("Job %s: could not read the existing Job %s: %s", job_id, name,
                        exc.reason)
            return
        labels = (_json(resp).get("metadata") or {}).get("labels") or {}
        owner = labels.get(naming.LABEL_INSTANCE)
        if owner is not None and owner != self.release:
            self._refuse(job_id, f"a Kubernetes Job named {name} already exists and "
                                 f"belongs to release {owner!r} of this namespace")
            return
        log.info("Job %s: Kubernetes Job %s already exists", job_id, name)
        with self._lock:
            self._mark_created(job_id)

    def _give_back(self, job_id: str, why: str, delay: float) -> None:
        log.warning("Job %s: the API server did not take its Job (%s); back in the queue, "
                    "launches paused %.1f s", job_id, why, delay)
        with self._lock:
            t = self._tracked.get(job_id)
            if t is not None:
                t.requeue = True
                t.dirty = True
        self._poke()

    def _refuse(self, job_id: str, why: str) -> None:
        log.error("Job %s: could not launch: %s", job_id, why)
        with self._lock:
            t = self._tracked.get(job_id)
            if t is not None:
                t.refused = JobError(type=ErrorType.infrastructure_error,
                                     message=f"could not launch: {why}")
                t.dirty = True
        self._poke()

    def adopt(self, claimed: Claimed) -> bool:
        """After a restart (or a change of leader): track the claimed job's Job again,
        from the view (one LIST for all of them, not a read each).

        A RUNNING record whose Job is not in the cluster: if the record names its Job,
        it was launched and is gone (deleted by hand, its finalizer forced off): its
        verdict follows from result.json or the deletion. If not, the controller
        stopped around the create: create it now (the same deterministic name). A Job
        cannot vanish behind a stopped controller's back, however long it stays down:
        qforge's finalizer keeps it until its outcome is in the store."""
        if not self.synced.wait(SYNC_TIMEOUT):
            raise RuntimeError("the runner Jobs could not be listed: adoption waits")
        record = claimed.record
        name = naming.job_name(record.job_id, max(1, record.attempts))
        with self._lock:
            state = self.view.state(name)
            if state is not None:
                self._track(_Tracked(claimed, name, seen=True))
                self._sweep.discard(name)
                return True
            recorded = record.placement.k8s_job if record.placement else None
            if recorded == name:
                self._track(_Tracked(claimed, name, deleted=True))
                return True
        self.launch(claimed)
        return True

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            tracked = self._tracked.get(job_id)
            if tracked is None:
                return False
            tracked.cancelled = True
            tracked.dirty = True
            name = tracked.name
        self._submit(lambda: self._delete(name))
        return True

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        for attempt in range(5):
            try:
                self._api("delete jobs", self.batch.delete_namespaced_job, name,
                          self.namespace, propagation_policy="Background",
                          _preload_content=False)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if not transient(exc.status) or attempt == 4:
                    log.warning("Could not delete Job %s: %s", name, exc.reason)
                    return
                time.sleep(self.backoff.failed(retry_after_seconds(exc.headers)))

    def active(self) -> set[str]:
        with self._lock:
            return set(self._tracked)

    def holding(self) -> set[str]:
        # A Job's outcome is collected in the pass that follows its pod's end, before
        # that pass launches: the collected ones are what the fair share leaves out.
        return self.active()

    def collect(self) -> list[Outcome]:
        """Outcomes of the tracked Jobs that changed; and the finalizers of the outcomes
        the scheduler recorded since the last call come off."""
        self._check_unfit()
        with self._lock:
            release, self._to_release = self._to_release, []
            sweep, self._sweep = self._sweep, set()
            items = [(j, t) for j, t in self._tracked.items() if t.dirty]
            for _, t in items:
                t.dirty = False
        for job_id, name in release:
            self._submit(functools.partial(self._release, job_id, name))
        for name in sweep:
            self._sweep_one(name)
        outcomes: list[Outcome] = []
        for job_id, t in items:
            outcome = self._verdict(job_id, t)
            if outcome is not None:
                outcomes.append(outcome)
                with self._lock:
                    self._tracked.pop(job_id, None)
                    self._by_name.pop(t.name, None)
                    if not outcome.requeue and not t.refused:
                        self._to_release.append((job_id, t.name))
                        self._releasing.add(t.name)
        return outcomes

    def updates(self) -> list[Update]:
        """Placement changes worth a record write: the pod on its node, or why it
        waits. A pod not yet scheduled, with nothing to say, is not one (each update is
        a write to the store in the scheduling thread; most pods are bound a moment
        after they exist)."""
        out: list[Update] = []
        with self._lock:
            for job_id, t in self._tracked.items():
                pod = self._pods.get(t.name)
                waiting = pod.waiting_reason if pod else None
                if pod is not None and pod.node is None and waiting is None:
                    continue
                key = (pod.name if pod else None, pod.node if pod else None, waiting)
                # Only once the API server has taken the Job: a record naming its Job
                # means "launched" to the next leader's adoption (named but absent:
                # deleted), and this controller may die before its create is answered.
                if key != t.last_update and (t.created or t.seen):
                    t.last_update = key
                    out.append(Update(job_id, placement=self._placement(t, pod),
                                      waiting_reason=waiting))
        return out

    def _placement(self, t: _Tracked, pod: PodView | None) -> Placement:
        return Placement(executor="kubernetes", worker_id=self.settings.worker_id,
                         instance=t.claimed.marker.instance, k8s_job=t.name,
                         pod=pod.name if pod else None, node=pod.node if pod else None)

    def shutdown(self) -> list[Outcome]:
        """The controller stops; its Jobs keep running in the cluster and are adopted
        by the next controller."""
        return []

    def close(self) -> None:
        self._closed.set()
        if self._results is not None:
            self._results.join(timeout=5)
        if self._pool is not None:
            # writes not started are dropped: a create's job is adopted (and created) by
            # the next controller, a finalizer is swept at its first listing
            self._pool.shutdown(wait=True, cancel_futures=True)

    # --------------------------------------------------------- watch feeds
    def jobs_listed(self, bodies: list[dict[str, Any]], listed_at: float) -> None:
        """A full listing of the release's Jobs (at start, after a broken watch, and as
        the safety net): the view starts again from it."""
        with self._lock:
            gone = self.view.replace(bodies, listed_at)
            for name in gone:
                self._job_gone(name)
            for name, t in ((t.name, t) for t in self._tracked.values()):
                if self.view.state(name) is not None:
                    t.seen = True
                    t.dirty = True
                elif t.seen and not self.view.pending(name):
                    t.deleted = True
                    t.dirty = True
            self._sweep = {n for n, _ in self.view.unrecorded() if n not in self._by_name}
        self.synced.set()
        self._poke()

    def observe_job(self, body: dict[str, Any]) -> None:
        self._job_event("MODIFIED", body)

    def job_deleted(self, body: dict[str, Any]) -> None:
        self._job_event("DELETED", body)

    def job_event(self, kind: str, body: dict[str, Any]) -> None:
        self._job_event(kind, body)

    def _job_event(self, kind: str, body: dict[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name") or "")
        with self._lock:
            before = self.view.state(name)
            state = self.view.apply(kind, body)
            # a slot freed (its Job's pod ended, or it is gone): refill it at once
            poke = before is not None and before.holding and (state is None or not state.holding)
            job_id = self._by_name.get(name)
            t = self._tracked.get(job_id) if job_id else None
            if state is None:
                self._job_gone(name)
                poke = poke or t is not None
            elif t is not None:
                t.seen = True
                t.dirty = True
                poke = poke or not state.holding or state.deleting
            elif state.finalizer and (not state.holding or state.deleting) \
                    and name not in self._releasing:
                self._sweep.add(name)
        if poke:
            self._poke()

    def _job_gone(self, name: str) -> None:
        self._pods.pop(name, None)
        job_id = self._by_name.get(name)
        t = self._tracked.get(job_id) if job_id else None
        if t is not None:
            t.deleted = True
            t.dirty = True

    def pods_listed(self, bodies: list[dict[str, Any]], listed_at: float) -> None:
        del listed_at
        with self._lock:
            self._pods.clear()
            for body in bodies:
                self._pod_event_locked("ADDED", body)

    def observe_pod(self, body: dict[str, Any]) -> None:
        self.pod_event("MODIFIED", body)

    def pod_event(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            poke = self._pod_event_locked(kind, body)
        if poke:
            self._poke()

    def _pod_event_locked(self, kind: str, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        owners = [o.get("name") for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "Job"]
        job = (owners[0] if owners else None) or (meta.get("labels") or {}).get(
            "batch.kubernetes.io/job-name") or (meta.get("labels") or {}).get("job-name")
        if not job:
            return False
        if kind == "DELETED":
            return False  # the Job's own end is what counts; keep the last view
        job_id = self._by_name.get(job)
        # Keep pods of tracked Jobs, of Jobs that still matter (not recorded), and of
        # Jobs not seen yet (the pod stream may run ahead of the Job stream).
        if job_id is None and self.view.state(job) is not None \
                and self.view.body(job) is None:
            self._pods.pop(job, None)
            return False
        view = pod_view(body)
        self._pods[job] = view
        t = self._tracked.get(job_id) if job_id else None
        if t is None:
            return False
        t.dirty = True
        t.pending_since = autoscaling.pending_since(t.pending_since, view.unschedulable,
                                                    self._clock())
        return view.phase in ("Succeeded", "Failed")

    # ------------------------------------------------------------ verdicts
    def _verdict(self, job_id: str, t: _Tracked) -> Outcome | None:
        if t.refused is not None:
            return Outcome(job_id, error=t.refused)
        if t.requeue:
            return Outcome(job_id, requeue=True)
        with self._lock:
            job = self.view.body(t.name)
            state = self.view.state(t.name)
            pod = self._pods.get(t.name)
        finished = job_end_state(job) if job else None
        if finished is None and pod is not None and pod.phase == "Succeeded":
            finished = "Complete"  # the pod's own end, before the Job controller counts it
        early = None
        if finished is None and t.result_seen:  # its runner's success, before the pod's
            early = self._report(job_id)
            if early is not None and early.success and _this_run(early, t):
                finished = "Complete"
            else:
                early = None  # a failure waits for the pod (and the Job) to say how
        deleting = t.deleted or (state is not None and state.deleting and finished is None)
        if finished == "Failed" and (pod is None or pod.phase not in ("Failed", "Succeeded")):
            pod = self._final_pod(t, pod)
        placement = self._placement(t, pod)
        if t.cancelled:
            return Outcome(job_id, placement=placement, error=JobError(
                type=ErrorType.cancelled, message="cancelled by user; its Kubernetes Job "
                                                  f"{t.name} was deleted"))
        report = early or (self._report(job_id) if finished or deleting else None)
        uid = _uid(job)
        if finished == "Complete" or (deleting and finished is None and report is not None):
            if report is not None and report.success:
                self._event(t.name, uid, events.REASON_COMPLETED, events.completed_message(
                    job_id, report.result.energy if report.result else None,
                    report.result.gap if report.result else None))
                return Outcome(job_id, report=report, placement=placement)
            error = (report.error if report and report.error else JobError(
                type=ErrorType.infrastructure_error,
                message=f"Kubernetes Job {t.name} completed but the runner wrote no "
                        "readable result.json"))
            self._failed_event(t.name, uid, job_id, error)
            return Outcome(job_id, error=error, placement=placement)
        if t.unfit is not None and t.pending_since is not None and finished is None \
                and not deleting:  # it can never be placed: no Job (nor pod) stays
            error = autoscaling.unfit_error(t.unfit)
            self._submit(functools.partial(self._delete, t.name))
            self._failed_event(t.name, uid, job_id, error)
            return Outcome(job_id, error=error, placement=placement)
        if finished == "Failed" and job is not None:
            error = failure_error(job, pod, report)
            self._failed_event(t.name, uid, job_id, error)
            return Outcome(job_id, error=error, placement=placement)
        if deleting:
            if self.store.cancels.requested(job_id):
                return Outcome(job_id, placement=placement, error=JobError(
                    type=ErrorType.cancelled, message="cancelled by user"))
            return Outcome(job_id, placement=placement, error=JobError(
                type=ErrorType.infrastructure_error,
                message=f"its Kubernetes Job {t.name} was deleted before it finished"))
        return None

    # ------------------------------------------------------------ autoscaler
    def _check_unfit(self) -> None:
        """Pods unschedulable for a while: is any of them one no node the autoscaler can
        make will fit? A bounded LIST of pod Events, in a writer thread
        (autoscaling.UnfitPods)."""
        with self._lock:
            pending = {pod.name: t.pending_since for t in self._tracked.values()
                       if t.pending_since is not None
                       and (pod := self._pods.get(t.name)) is not None}
        pods = self.unfit_pods.due(pending)
        if pods:
            self._submit(lambda: self._mark_unfit(self.unfit_pods.check(pods)))

    def _list_pod_events(self) -> list[dict[str, Any]]:
        resp = self._api("list events", self.core.list_namespaced_event, self.namespace,
                         field_selector=autoscaling.EVENT_SELECTOR, _preload_content=False)
        return [e for e in _json(resp).get("items") or [] if isinstance(e, dict)]

    def _mark_unfit(self, unfit: dict[str, str]) -> None:
        if not unfit:
            return
        with self._lock:
            for t in self._tracked.values():
                pod = self._pods.get(t.name)
                if pod is not None and pod.name in unfit and t.pending_since is not None:
                    t.unfit = unfit[pod.name]
                    t.dirty = True
        self._poke()

    def _final_pod(self, t: _Tracked, pod: PodView | None) -> PodView | None:
        """The failed Job's pod as it ended. The pod and Job watches are two streams: the
        Job's Failed event can arrive before the pod's own last update (OOMKilled, exit
        code), so when the watched pod has not ended yet it is read once from the API."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self._api("list pods", self.core.list_namespaced_pod, self.namespace,
                             label_selector=f"batch.kubernetes.io/job-name={t.name}",
                             _preload_content=False)
        except ApiException as exc:
            log.warning("Job %s: could not read its pods: %s", t.name, exc.reason)
            return pod
        views = [pod_view(p) for p in _json(resp).get("items") or []]
        ended = [v for v in views if v.phase in ("Failed", "Succeeded")]
        if ended or views:
            return (ended or views)[-1]
        return pod

    def record_done(self, job_id: str, name: str) -> None:
        """Take the finalizer off a Job whose outcome is in the store (tests, tools)."""
        self._release(job_id, name)

    def _release(self, job_id: str, name: str) -> None:
        """Take qforge's finalizer off a Job, once its record is terminal (or gone): from
        then on its TTL, a cancel or a user may remove it."""
        try:
            self._release_once(job_id, name)
        finally:
            with self._lock:
                self._releasing.discard(name)

    def _release_once(self, job_id: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            if not outcome_recorded(self.store.read(job_id), name):
                return  # not recorded (yet): the finalizer stays
        except JobNotFound:
            pass
        except CorruptRecord as exc:
            log.error("Job %s: keeping the finalizer on %s: %s", job_id, name, exc)
            return
        for _ in range(5):
            with self._lock:
                body = self.view.body(name)
            try:
                if body is None:
                    body = _json(self._api("get jobs", self.batch.read_namespaced_job, name,
                                           self.namespace, _preload_content=False))
                finalizers = list((body.get("metadata") or {}).get("finalizers") or ())
                if naming.FINALIZER not in finalizers:
                    return
                index = finalizers.index(naming.FINALIZER)
                patch = [{"op": "test", "path": f"/metadata/finalizers/{index}",
                          "value": naming.FINALIZER},
                         {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
                self._api("patch jobs", self.batch.patch_namespaced_job, name,
                          self.namespace, patch, _preload_content=False)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if transient(exc.status):
                    time.sleep(self.backoff.failed(retry_after_seconds(exc.headers)))
                elif exc.status not in (409, 422):  # 409/422: the list moved under us
                    log.warning("Could not take the finalizer off Job %s: %s", name,
                                exc.reason)
                    return
                self._forget_body(name)  # read it afresh
        log.warning("Gave up taking the finalizer off Job %s for now", name)

    def _forget_body(self, name: str) -> None:
        """Make the next release attempt read the Job from the API."""
        with self._lock:
            self.view.drop_body(name)

    def _sweep_one(self, name: str) -> None:
        """An untracked Job still carrying the finalizer (a crash between recording an
        outcome and taking the finalizer off, or a Job no record claims any more)."""
        with self._lock:
            if name in self._by_name:
                return
            state = self.view.state(name)
        if state is None or state.job_id is None or name in self._releasing:
            return
        with self._lock:
            self._releasing.add(name)
        try:
            record = self.store.read(state.job_id)
        except JobNotFound:
            self._submit(lambda: self._release(state.job_id or "", name))
            return
        except CorruptRecord:
            record = None
        if record is not None and outcome_recorded(record, name):
            self._submit(lambda: self._release(state.job_id or "", name))
        else:
            with self._lock:
                self._releasing.discard(name)

    def forget_all(self) -> None:
        """Stop tracking everything (this controller lost the Lease: the new leader
        adopts the Jobs, and this one adopts them again if it leads once more)."""
        with self._lock:
            self._tracked.clear()
            self._by_name.clear()
            self._to_release.clear()
            self._sweep.clear()
            self._releasing.clear()

    def _report(self, job_id: str) -> RunReport | None:
        return load_report(self.store.layout.job_dir(job_id))

    def _failed_event(self, name: str, uid: str | None, job_id: str,
                      error: JobError) -> None:
        self._event(name, uid, events.REASON_FAILED,
                    events.failed_message(job_id, error.type, error.message), warning=True)

    def _event(self, name: str, uid: str | None, reason: str, message: str,
               *, warning: bool = False) -> None:
        body = events.build_event(job_name=name, namespace=self.namespace, reason=reason,
                                  message=message, now=datetime.now(UTC), job_uid=uid,
                                  event_type="Warning" if warning else "Normal")
        self._submit(lambda: self._post_event(name, reason, body))

    def _post_event(self, name: str, reason: str, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        try:
            self._api("create events", self.core.create_namespaced_event, self.namespace,
                      body, _preload_content=False)
        except (ApiException, OSError, NoAnswer) as exc:  # best effort; never fail a job
            log.warning("Could not post Event %s on Job %s: %s", reason, name,
                        getattr(exc, "reason", exc))


def outcome_recorded(record: JobRecord, name: str) -> bool:
    """Whether the run of the Job `name` is over and in the record: the record is
    terminal, or that run is one of the earlier attempts in its history (the retry
    ladder queued the job again: docs/retry.md)."""
    if record.status.terminal:
        return True
    claims = record.history[-1].claims if record.history else 0
    return any(naming.job_name(record.job_id, k) == name for k in range(1, claims + 1))


def _this_run(report: RunReport, t: _Tracked) -> bool:
    """The report was written by this launch, not left by an earlier attempt: it began
    after the job was claimed (the same ISO-8601 format sorts as time does)."""
    claimed_at = t.claimed.record.started_at
    return claimed_at is None or report.started_at >= claimed_at


def _logged(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception:  # a writer thread never dies of one request
        log.exception("Kubernetes API write failed")


def _json(resp: Any) -> dict[str, Any]:
    """The JSON body of an answer made with _preload_content=False (or a dict)."""
    if isinstance(resp, dict):
        return resp
    data = getattr(resp, "data", None)
    if data is None:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
