"""The Kubernetes executor: one batch/v1 Job per calculation, as a few parts.

The scheduling core calls it from the poller thread (controller/scheduling/executor.py).
It puts together:
- the API door (controller/k8s/apiwriter.py): every request counted and through one
  token bucket (KUBE_API_QPS / KUBE_API_BURST), writer threads so the scheduling thread
  never waits on the API, one back-off after a 429, a 5xx or no answer;
- the watch-fed tracker (controller/k8s/tracker.py): each tracked Job's explicit phase
  (controller/k8s/phase.py), its pod, and the release's Job view the cap is counted
  from (two list-then-watch threads feed it: controller/k8s/watch.py);
- the verdict (controller/k8s/verdict.py): a pure function from what is observed of a
  Job to the decision;
- the one place that writes a decision (controller/k8s/settle.py): its Event and any
  Job deletion, then, once the outcome is recorded, the Job's clean-up;
- the early look for result.json (controller/k8s/results.py);
- without the pod watch (KUBE_POD_WATCH=false), the pods of Jobs that wait read when
  needed (controller/k8s/podreads.py).

The API budget of a job in steady state is the bare loop's: its create, and its deletion
JOB_KEEP_SECONDS after its outcome is in the store; no LIST, no read, an Event only on a
failure (SUCCESS_EVENTS adds one per success). With TTL_SECONDS_AFTER_FINISHED set,
Kubernetes deletes the Jobs instead, and a patch takes qforge's finalizer off each.
With an autoscaler, one bounded LIST of pod Events while runner pods stay unschedulable
(controller/k8s/autoscaling.py): a pod no node can fit fails its job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from qforge.k8s import autoscaling, events, naming
from qforge.k8s.apiwriter import ApiWriter, Submit, api_message
from qforge.k8s.compact import compact_job
from qforge.k8s.manifests import build_job_manifest
from qforge.k8s.phase import ANNOUNCED, Phase, Signal, Tracked
from qforge.k8s.podreads import PodReads
from qforge.k8s.results import ResultLooks
from qforge.k8s.settle import Settler, outcome_recorded
from qforge.k8s.status import PodView, latest_pod
from qforge.k8s.throttle import Backoff, TokenBucket, retry_after_seconds, transient
from qforge.k8s.tracker import Tracker
from qforge.k8s.verdict import (
    Observation,
    decide,
    finished_state,
    needs_final_pod,
    needs_report,
    this_run,
)
from qforge.k8s.view import JobView
from qforge.record import Placement
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore, load_report
from qforge_runner.result import ErrorType, JobError, RunReport

log = logging.getLogger(__name__)

__all__ = ["SYNC_TIMEOUT", "KubernetesExecutor", "outcome_recorded"]

# How long adoption waits for the first full listing of the release's Jobs.
SYNC_TIMEOUT = 60.0


class KubernetesExecutor:
    kind = "kubernetes"
    others_may_recover = False  # runner Jobs outlive the controller: it adopts them

    def __init__(self, store: JobStore, settings: Settings, batch_api: Any, core_api: Any,
                 *, clock: Callable[[], float] = time.monotonic,
                 submit: Submit | None = None) -> None:
        self.store = store
        self.settings = settings
        self.api = ApiWriter(settings, batch_api, core_api, clock=clock, submit=submit)
        self.tracker = Tracker(clock=clock, poke=self._poke,
                               owner_deletes=settings.ttl_seconds_after_finished is None)
        self.settler = Settler(store, self.api, self.tracker, settings, clock=clock)
        self.results = ResultLooks(store, self.tracker, pods_watched=settings.kube_pod_watch)
        self.pod_reads = None if settings.kube_pod_watch else PodReads()
        self.unfit_pods = autoscaling.UnfitPods(
            lambda: self.api.pod_events(autoscaling.EVENT_SELECTOR), clock)
        self._clock = clock
        self._wake: threading.Event | None = None

    # The parts' state, as the operator, the metrics and the tests name it.
    batch = property(lambda self: self.api.batch)
    core = property(lambda self: self.api.core)
    view: JobView = property(lambda self: self.tracker.view)  # type: ignore[assignment]
    synced: threading.Event = property(  # type: ignore[assignment]
        lambda self: self.tracker.synced)
    bucket: TokenBucket = property(lambda self: self.api.bucket)  # type: ignore[assignment]
    backoff: Backoff = property(lambda self: self.api.backoff)  # type: ignore[assignment]
    requests: Counter[str] = property(  # type: ignore[assignment]
        lambda self: self.api.requests)

    def attach(self, wake: threading.Event) -> None:
        self._wake = wake
        if self.api.threaded:  # not under unit tests
            self.results.start()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def look_for_results(self) -> int:
        """One round of the early look for result.json (controller/k8s/results.py)."""
        return self.results.look()

    def resync_due(self, age: float) -> bool:
        """The watch's safety net: a full LIST once KUBE_RESYNC_SECONDS have passed since
        the last, and only while this controller tracks Jobs."""
        with self.tracker.lock:
            tracking = bool(self.tracker.jobs)
        return tracking and age >= self.settings.kube_resync_seconds

    # ----------------------------------------------------------- core calls
    def unfinished_jobs(self) -> int:
        """The release's Jobs that hold a slot (unfinished in the cluster, or created and
        not yet seen by the watch). From the watch-fed view: no API call."""
        with self.tracker.lock:
            return self.tracker.view.unfinished()

    def free_slots(self) -> int:
        if not self.tracker.synced.is_set() or self.api.backoff.remaining() > 0:
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
        with self.tracker.lock:
            self.tracker.track(Tracked(claimed, name))
            self.tracker.view.expect(name, self._clock())
        self.api.submit(lambda: self._create(claimed, name, manifest))

    def _create(self, claimed: Claimed, name: str, manifest: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        job_id = claimed.record.job_id
        try:
            job = self.api.create_job(manifest)
        except ApiException as exc:
            if exc.status == 409:  # already exists = already launched (if it is ours)
                self.api.backoff.succeeded()
                self._already_exists(job_id, name)
                return
            with self.tracker.lock:
                self.tracker.view.unexpect(name)
            if transient(exc.status):
                delay = self.api.backoff.failed(retry_after_seconds(exc.headers))
                self._give_back(job_id, f"{exc.status} {exc.reason}", delay)
                return
            self._refuse(job_id, f"creating Job {name}: {exc.status} {exc.reason}: "
                                 f"{api_message(exc)}")
            return
        except (OSError, NoAnswer) as exc:  # no answer from the API server
            with self.tracker.lock:
                self.tracker.view.unexpect(name)
            delay = self.api.backoff.failed()
            self._give_back(job_id, f"{type(exc).__name__}: {exc}", delay)
            return
        with self.tracker.lock:
            self.tracker.view.created(name, self._clock())
            self.tracker.signal_locked(job_id, Signal.CREATED)
        self.api.backoff.succeeded()
        if self.settings.launch_events:
            spec = claimed.record.spec
            self.settler.event(name, _uid(job), events.REASON_LAUNCHED,
                               events.launched_message(job_id, spec.method.value,
                                                       spec.task.value,
                                                       spec.molecule.formula))

    def _already_exists(self, job_id: str, name: str) -> None:
        """A Job of that name exists: launched, unless another release owns it (two
        stores that hold the same job id): then this job fails, the other is untouched."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.api.read_job(name)
        except ApiException as exc:
            log.warning("Job %s: could not read the existing Job %s: %s", job_id, name,
                        exc.reason)
            return
        owner = ((job.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_INSTANCE)
        if owner is not None and owner != self.settings.release:
            self._refuse(job_id, f"a Kubernetes Job named {name} already exists and "
                                 f"belongs to release {owner!r} of this namespace")
            return
        log.info("Job %s: Kubernetes Job %s already exists", job_id, name)
        self.tracker.signal(job_id, Signal.CREATED)

    def _give_back(self, job_id: str, why: str, delay: float) -> None:
        log.warning("Job %s: the API server did not take its Job (%s); back in the queue, "
                    "launches paused %.1f s", job_id, why, delay)
        self.tracker.signal(job_id, Signal.REQUEUE, poke=True)

    def _refuse(self, job_id: str, why: str) -> None:
        log.error("Job %s: could not launch: %s", job_id, why)
        with self.tracker.lock:
            t = self.tracker.signal_locked(job_id, Signal.REFUSE)
            if t is not None:
                t.refusal = JobError(type=ErrorType.infrastructure_error,
                                     message=f"could not launch: {why}")
        self.tracker.poke()

    def adopt(self, claimed: Claimed) -> bool:
        """After a restart (or a change of leader): track the claimed job's Job again,
        from the view (one LIST for all of them, not a read each).

        A RUNNING record whose Job is not in the cluster: if the record names its Job,
        it was launched and is gone (deleted by hand): its verdict follows from
        result.json or the deletion. If not, the controller stopped around the create:
        create it now (the same deterministic name). A Job cannot vanish behind a
        stopped controller's back, however long it stays down: the controller is the
        only deleter of its Jobs and deletes them once their outcome is in the store
        (with a TTL, qforge's finalizer keeps them until then). A Job that finished
        meanwhile is read once (the listing keeps no body of a finished Job)."""
        tracker = self.tracker
        if not tracker.synced.wait(SYNC_TIMEOUT):
            raise RuntimeError("the runner Jobs could not be listed: adoption waits")
        record = claimed.record
        name = naming.job_name(record.job_id, max(1, record.attempts))
        recorded = record.placement.k8s_job if record.placement else None
        with tracker.lock:
            if tracker.view.state(name) is not None:
                tracker.track(Tracked(claimed, name, phase=Phase.SEEN))
                tracker.sweep.discard(name)
                unread = tracker.view.body(name) is None
            elif recorded == name:
                tracker.track(Tracked(claimed, name, phase=Phase.GONE))
                return True
            else:
                unread = None
        if unread is None:
            self.launch(claimed)
        elif unread:
            self._read_finished(record.job_id, name)
        return True

    def _read_finished(self, job_id: str, name: str) -> None:
        """A Job that finished while no controller tracked it: the listing kept only its
        state (no finalizer keeps its body), so it is read once for its verdict."""
        from kubernetes.client.exceptions import ApiException

        try:
            body = compact_job(self.api.read_job(name))
        except ApiException as exc:
            if exc.status == 404:
                self.tracker.signal(job_id, Signal.GONE)
            else:  # the verdict waits for the next event or listing of the Job
                log.warning("Job %s: could not read its Job %s: %s", job_id, name,
                            exc.reason)
            return
        self.tracker.job_event("MODIFIED", body)

    def cancel(self, job_id: str) -> bool:
        t = self.tracker.signal(job_id, Signal.CANCEL)
        if t is None:
            return False
        name = t.name
        self.api.submit(lambda: self._delete(name))
        return True

    def _delete(self, name: str) -> None:
        self.api.delete_job(name)

    def active(self) -> set[str]:
        with self.tracker.lock:
            return set(self.tracker.jobs)

    def holding(self) -> set[str]:
        # A Job's outcome is collected in the pass that follows its pod's end, before
        # that pass launches: the collected ones are what the fair share leaves out.
        return self.active()

    def collect(self) -> list[Outcome]:
        """Outcomes of the tracked Jobs that changed; and the clean-up of the outcomes
        the scheduler recorded since the last call."""
        self._check_unfit()
        self._read_waiting_pods()
        with self.tracker.lock:
            items = self.tracker.take_dirty()
        self.settler.flush()
        outcomes: list[Outcome] = []
        for t in items:
            outcome = self._verdict(t)
            if outcome is None:
                continue
            outcomes.append(outcome)
            with self.tracker.lock:
                self.tracker.untrack(t.job_id)
                if not outcome.requeue and t.phase is not Phase.REFUSED:
                    self.settler.recorded(t.job_id, t.name)
        return outcomes

    def _verdict(self, t: Tracked) -> Outcome | None:
        """Gather what is known of one Job (reading result.json, or its pod, only when
        the verdict needs it), decide, and write the decision."""
        with self.tracker.lock:
            job = self.tracker.view.body(t.name)
            state = self.tracker.view.state(t.name)
            pod = self.tracker.pods.get(t.name)
            phase = t.phase
        finished = finished_state(job, pod)
        deleting = state is not None and state.deleting
        report: RunReport | None = None
        early = False
        if phase is Phase.RESULT and finished is None:  # its runner's success, first
            report = self._report(t.job_id)
            early = report is not None and report.success \
                and this_run(report, t.claimed.record.started_at)
            if not early:
                report = None  # a failure waits for the pod (and the Job) to say how
        if phase is not Phase.CANCELLED and needs_final_pod(finished, pod):
            pod = self._final_pod(t.name, pod)
        if not early and needs_report(phase, deleting, finished):
            report = self._report(t.job_id)
        gone = phase is Phase.GONE or (deleting and finished is None)
        decision = decide(Observation(
            job_id=t.job_id, name=t.name, phase=phase, job=job, deleting=deleting,
            pod=pod, finished=finished, report=report, early=early, refusal=t.refusal,
            unfit=t.unfit, pending=t.pending_since is not None,
            cancel_requested=gone and report is None
            and self.store.cancels.requested(t.job_id)))
        if decision is None:
            return None
        placement = self._placement(t, pod)
        if placement.node is None and decision.report is not None \
                and decision.report.node is not None:  # no pod seen: the runner says
            placement = placement.model_copy(update={
                "node": decision.report.node, "pod": placement.pod or decision.report.pod})
        return self.settler.write(decision, t.name, _uid(job), placement)

    def _report(self, job_id: str) -> RunReport | None:
        return load_report(self.store.layout.job_dir(job_id))

    def _final_pod(self, name: str, pod: PodView | None) -> PodView | None:
        """The failed Job's pod as it ended. The pod and Job watches are two streams: the
        Job's Failed event can arrive before the pod's own last update (OOMKilled, exit
        code), so when the watched pod has not ended yet it is read once from the API."""
        views = self._job_pods(name)
        return (latest_pod(views) if views is not None else None) or pod

    def _job_pods(self, name: str) -> list[PodView] | None:
        """The pods of Job `name`, read from the API; None (and a warning) if refused."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.job_pods(name)
        except ApiException as exc:
            log.warning("Job %s: could not read its pods: %s", name, exc.reason)
            return None

    def _read_waiting_pods(self) -> None:
        """Without the pod watch: read the pods of the Jobs that have waited a while for
        a ready pod (controller/k8s/podreads.py), in the writer threads (which log a
        request that got no answer)."""
        if self.pod_reads is None:
            return
        with self.tracker.lock:
            tracked = set(self.tracker.by_name)
        for name in self.pod_reads.due(self.tracker.waiting_jobs(), tracked, self._clock()):
            self.api.submit(lambda name=name: self._read_pods(name))  # type: ignore[misc]

    def _read_pods(self, name: str) -> None:
        views = self._job_pods(name)
        if views is not None:
            self.tracker.pods_read(name, views)

    def _check_unfit(self) -> None:
        """Pods unschedulable for a while: is any of them one no node the autoscaler can
        make will fit? A bounded LIST of pod Events, in a writer thread."""
        pods = self.unfit_pods.due(self.tracker.pending_pods())
        if pods:
            self.api.submit(lambda: self.tracker.mark_unfit(self.unfit_pods.check(pods)))

    def updates(self) -> list[Update]:
        """Placement changes worth a record write: the pod on its node, or why it
        waits. A pod not yet scheduled, with nothing to say, is not one (each update is
        a write to the store in the scheduling thread; most pods are bound a moment
        after they exist)."""
        out: list[Update] = []
        with self.tracker.lock:
            for job_id, t in self.tracker.jobs.items():
                pod = self.tracker.pods.get(t.name)
                waiting = pod.waiting_reason if pod else None
                if pod is not None and pod.node is None and waiting is None:
                    continue
                key = (pod.name if pod else None, pod.node if pod else None, waiting)
                # Only once the API server has taken the Job: a record naming its Job
                # means "launched" to the next leader's adoption (named but absent:
                # deleted), and this controller may die before its create is answered.
                if key != t.last_update and t.phase in ANNOUNCED:
                    t.last_update = key
                    out.append(Update(job_id, placement=self._placement(t, pod),
                                      waiting_reason=waiting))
        return out

    def _placement(self, t: Tracked, pod: PodView | None) -> Placement:
        return Placement(executor="kubernetes", worker_id=self.settings.worker_id,
                         instance=t.claimed.marker.instance, k8s_job=t.name,
                         pod=pod.name if pod else None, node=pod.node if pod else None)

    def record_done(self, job_id: str, name: str) -> None:
        """Clean up a Job whose outcome is in the store (tests, tools)."""
        self.settler.release(job_id, name)

    def forget_all(self) -> None:
        """Stop tracking everything (this controller lost the Lease: the new leader
        adopts the Jobs, and this one adopts them again if it leads once more)."""
        self.tracker.clear()
        self.settler.forget()

    def shutdown(self) -> list[Outcome]:
        """The controller stops; its Jobs keep running in the cluster and are adopted
        by the next controller."""
        return []

    def close(self) -> None:
        self.results.close()
        self.api.close()


def _uid(job: dict[str, Any] | None) -> str | None:
    uid = ((job or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None
