"""`qforge controller`: the kopf operator.

Thin handlers only, named `<what>_<event>`. The leader loop (`LeaderLoop`: it holds the
release's Lease, and while it leads, the scheduling core drives the Kubernetes
executor) runs in a thread started in `@kopf.on.startup`, kept in memo and stopped in
`@kopf.on.cleanup`. The release's runner Jobs and pods are followed by the executor's
own list-then-watch threads (controller/k8s/watch.py: paginated raw-JSON listings, a
LIST only at start, after a broken watch, and for the Jobs a safety net every
KUBE_RESYNC_SECONDS, 300 s by default), which write nothing on them. The kopf
liveness probe: kopf's health endpoint runs the probe below, which fails when the
leader loop has not finished a pass within 3 poll intervals.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

from qforge.k8s import naming
from qforge.k8s.compact import compact_job, compact_pod
from qforge.k8s.executor import KubernetesExecutor
from qforge.k8s.leader import LeaseElector
from qforge.k8s.watch import ListWatch
from qforge.logs import setup_logging
from qforge.metrics.kubernetes import ControllerMetrics
from qforge.scheduling.core import PassReport, Scheduler
from qforge.settings import Settings
from qforge.store.jobstore import JobStore

log = logging.getLogger(__name__)


class LeaderLoop:
    """Leader election, then (while leading) one scheduling pass per interval.

    Only the holder of the Lease acts. A controller that loses it (it could not renew in
    time: paused, cut off from the API server) stops at once and forgets what it
    tracked: the new leader adopts those Jobs (the instance name is the same for every
    controller of a namespace), and this one starts afresh (index rebuild, adoption) if
    it leads again.
    """

    def __init__(self, settings: Settings, make_scheduler: Callable[[], Scheduler],
                 executor: KubernetesExecutor, elector: LeaseElector) -> None:
        self.settings = settings
        self.make_scheduler = make_scheduler
        self.executor = executor
        self.scheduler: Scheduler | None = None
        self.elector = elector
        self.stop = threading.Event()
        self.last_pass = time.monotonic()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._loop, name="leader-loop", daemon=True)

    def _loop(self) -> None:
        log.info("Controller listening for jobs every %gs...", self.settings.poll_interval)
        while not self.stop.is_set():
            report: PassReport | None = None
            try:
                report = self.run_once()
                self.error = None
            except Exception as exc:  # one bad pass never stops the loop
                self.error = f"{type(exc).__name__}: {exc}"
                if api_unreachable(exc):
                    log.warning("Kubernetes API unreachable, retrying at the next pass: %s",
                                one_line(exc))
                else:
                    log.exception("Scheduling pass failed")
            self.last_pass = time.monotonic()
            # While leading: a Job that ends, a submission or a cancel ends the wait.
            if report is not None and self.scheduler is not None:
                self.scheduler.wait_for_work(self.stop, report)
            else:
                self.stop.wait(self.settings.poll_interval)

    def run_once(self) -> PassReport | None:
        """One pass: renew (or win) the Lease, then schedule. Returns the scheduling
        pass's report while leading, None otherwise."""
        if not self.elector.try_acquire_or_renew():
            if self.scheduler is not None:
                log.warning("Lost the controller Lease: this controller stops acting "
                            "until it leads again")
                self.scheduler = None
                self.executor.forget_all()
            return None
        if self.scheduler is None:
            scheduler = self.make_scheduler()
            scheduler.start()
            self.scheduler = scheduler
        return self.scheduler.run_once()

    def healthy(self) -> tuple[bool, float]:
        age = time.monotonic() - self.last_pass
        return age <= 3 * self.settings.poll_interval and self.thread.is_alive(), age

    def close(self) -> None:
        self.stop.set()
        if self.scheduler is not None:
            self.scheduler.wake.set()
        self.thread.join(timeout=30)
        if self.scheduler is not None:
            self.scheduler.heartbeats.retire()
        self.elector.release()


def api_unreachable(exc: BaseException) -> bool:
    """True for the answers of an API server that is down or restarting (no connection,
    a timeout, a 5xx): the pass is simply retried, so a warning line says it, not a
    traceback."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status is None or exc.status == 0 or exc.status >= 500
    return isinstance(exc, HTTPError | ConnectionError | TimeoutError)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short log line (urllib3's messages nest and span lines)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _never(age: float) -> bool:
    del age
    return False


def _clients(settings: Settings, metrics: ControllerMetrics | None = None
             ) -> tuple[Any, Any, Any]:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    # Enough connections for the writer threads, the two watches and the Lease.
    configuration.connection_pool_maxsize = settings.kube_api_writers + 8
    api = client.ApiClient(configuration)
    if metrics is not None:  # every request counted, by verb and code
        metrics.kubernetes.instrument(api)
    return client.BatchV1Api(api), client.CoreV1Api(api), client.CoordinationV1Api(api)


@kopf.on.startup()
def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Watches that silently stop are kopf's best-known trap (issues 585, 698).
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING
    # A namespaced Role cannot list namespaces or CRDs: do not try.
    settings.scanning.disabled = True
    qsettings: Settings = memo["qforge_settings"]
    metrics: ControllerMetrics | None = memo.get("qforge_metrics")
    batch, core, coordination = _clients(qsettings, metrics)
    store = JobStore(qsettings.jobs_dir)
    store.ensure()
    executor = KubernetesExecutor(store, qsettings, batch, core)
    selector = naming.selector(release=qsettings.release)
    watches = [
        ListWatch("jobs", batch.list_namespaced_job, qsettings.namespace, selector,
                  on_list=executor.tracker.jobs_listed, on_event=executor.tracker.job_event,
                  resync_due=executor.resync_due, bucket=executor.bucket,
                  compact=compact_job),
    ]
    if not qsettings.kube_pod_watch and metrics is not None:
        metrics.kubernetes.read_waiting.source = executor.tracker.waiting_by_reason
    if qsettings.kube_pod_watch:
        pods_listed: Callable[[list[dict[str, Any]], float], None] = \
            executor.tracker.pods_listed
        pod_event: Callable[[str, dict[str, Any]], None] = executor.tracker.pod_event
        if metrics is not None:
            pods = metrics.kubernetes.pods
            pods_listed, pod_event = pods.tee_list(pods_listed), pods.tee_event(pod_event)
        # no safety net for pods: the Jobs' view decides the cap and outcomes; a pod is
        # listed again only when its watch cannot be resumed
        watches.append(ListWatch("pods", core.list_namespaced_pod, qsettings.namespace,
                                 selector, on_list=pods_listed, on_event=pod_event,
                                 resync_due=_never, bucket=executor.bucket,
                                 compact=compact_pod))
    for watch in watches:
        watch.start()
    memo["watches"] = watches
    # One instance name for every controller of a namespace (not the pod's name): a new
    # leader, or the same controller restarted, adopts the Jobs of the one before. (The
    # scheduler marks it as one whose jobs no local worker may recover.)
    instance = f"{qsettings.namespace}.{qsettings.worker_id}"

    def make_scheduler() -> Scheduler:
        return Scheduler(store, executor, qsettings, instance=instance,
                         observer=metrics.scheduling if metrics else None)

    identity = f"{qsettings.pod_name or socket.gethostname()}.{os.getpid()}"
    elector = LeaseElector(coordination, qsettings.namespace,
                           naming.lease_name(qsettings.release), identity,
                           duration_seconds=max(15, int(3 * qsettings.poll_interval)),
                           pod=(qsettings.pod_name, qsettings.pod_uid)
                           if qsettings.pod_name and qsettings.pod_uid else None,
                           core_api=core)
    loop = LeaderLoop(qsettings, make_scheduler, executor, elector)
    if metrics is not None:
        metrics.bind_active(executor.active)
        metrics.kubernetes.bind_leader(lambda: elector.leading)
    memo["executor"] = executor
    memo["leader_loop"] = loop
    loop.thread.start()
    log.info("Controller of release %s in namespace %s, store %s, cap %d, runner image %s",
             qsettings.release, qsettings.namespace, qsettings.jobs_dir,
             qsettings.max_concurrent_jobs, qsettings.runner_image)


@kopf.on.cleanup()
def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    loop: LeaderLoop | None = memo.get("leader_loop")
    if loop is not None:
        loop.close()
    for watch in memo.get("watches") or ():
        watch.close()
    executor: KubernetesExecutor | None = memo.get("executor")
    if executor is not None:
        executor.close()
        log.info("Kubernetes API requests made: %s", json.dumps(dict(sorted(
            executor.requests.items()))))
    log.info("Controller stopped")


@kopf.on.probe(id="leader_loop")
def leader_loop_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    loop: LeaderLoop | None = memo.get("leader_loop")
    if loop is None:
        return {"starting": True}
    ok, age = loop.healthy()
    if not ok:
        raise kopf.PermanentError(f"the leader loop has not finished a pass for {age:.0f}s")
    return {"last_pass_seconds_ago": round(age, 1), "leader": loop.elector.leading,
            "error": loop.error}


def run_operator(settings: Settings, *, liveness: str | None) -> int:
    """Run kopf in this process, namespaced, standalone (the Lease elects the leader)."""
    setup_logging(settings.log_dir, component="controller", fmt=settings.log_format)
    # kopf logs every handler call at INFO: one line per watch event of every runner Job
    # and pod. Keep its warnings and errors.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    log.info("Starting Controller...")
    memo = kopf.Memo(qforge_settings=settings)
    if settings.metrics_port is not None:
        memo["qforge_metrics"] = metrics = ControllerMetrics(settings)
        metrics.serve(settings.metrics_address, settings.metrics_port)
    kopf.run(standalone=True, namespaces=[settings.namespace], liveness_endpoint=liveness,
             memo=memo)
    return 0
