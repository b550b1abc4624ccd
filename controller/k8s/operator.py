"""`qforge controller`: the kopf operator.

Thin handlers only. The store poller (the scheduling core driving the Kubernetes
executor) runs in a thread started in `@kopf.on.startup`, kept in memo and stopped in
`@kopf.on.cleanup`. Runner Jobs and pods are watched with `@kopf.on.event`, which
writes nothing on them. Liveness: kopf's health endpoint runs the probe below, which
fails when the poller has not finished a pass within 3 poll intervals.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import kopf

from controller.k8s import naming
from controller.k8s.executor import KubernetesExecutor
from controller.k8s.leader import LeaseElector
from controller.logs import setup_logging
from controller.scheduling.core import KUBERNETES_INSTANCE_PREFIX, Scheduler
from controller.settings import Settings
from controller.store.jobstore import JobStore

log = logging.getLogger("controller.worker")

LEASE_NAME = "qforge-controller"


class Poller:
    """The store poller: leader election, then one scheduling pass per interval."""

    def __init__(self, settings: Settings, scheduler: Scheduler, elector: LeaseElector
                 ) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.elector = elector
        self.stop = threading.Event()
        self.last_pass = time.monotonic()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._loop, name="store-poller", daemon=True)
        self._started = False

    def _loop(self) -> None:
        log.info("Worker listening for jobs every %gs...", self.settings.poll_interval)
        while not self.stop.is_set():
            try:
                if self.elector.try_acquire_or_renew():
                    if not self._started:
                        self.scheduler.start()
                        self._started = True
                    self.scheduler.run_once()
                self.error = None
            except Exception as exc:  # one bad pass never stops the poller
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("Store poll failed")
            self.last_pass = time.monotonic()
            self.stop.wait(self.settings.poll_interval)

    def healthy(self) -> tuple[bool, float]:
        age = time.monotonic() - self.last_pass
        return age <= 3 * self.settings.poll_interval and self.thread.is_alive(), age

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        if self._started:
            self.scheduler.liveness.retire()
        self.elector.release()


def _clients() -> tuple[Any, Any, Any]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.BatchV1Api(), client.CoreV1Api(), client.CoordinationV1Api()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Watches that silently stop are kopf's best-known trap (issues 585, 698).
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING
    # A namespaced Role cannot list namespaces or CRDs: do not try.
    settings.scanning.disabled = True
    qsettings: Settings = memo["qforge_settings"]
    batch, core, coordination = _clients()
    store = JobStore(qsettings.jobs_dir)
    store.ensure()
    executor = KubernetesExecutor(store, qsettings, batch, core)
    instance = f"{KUBERNETES_INSTANCE_PREFIX}{qsettings.namespace}.{qsettings.worker_id}"
    scheduler = Scheduler(store, executor, qsettings, instance=instance)
    identity = f"{socket.gethostname()}.{os.getpid()}"
    elector = LeaseElector(coordination, qsettings.namespace, LEASE_NAME, identity,
                           duration_seconds=max(15, int(3 * qsettings.poll_interval)))
    poller = Poller(qsettings, scheduler, elector)
    memo["executor"] = executor
    memo["poller"] = poller
    poller.thread.start()
    log.info("Controller for namespace %s, store %s, cap %d, runner image %s",
             qsettings.namespace, qsettings.jobs_dir, qsettings.max_concurrent_jobs,
             qsettings.runner_image)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    poller: Poller | None = memo.get("poller")
    if poller is not None:
        poller.close()
    log.info("Controller stopped")


@kopf.on.probe(id="store_poller")
def store_poller(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    poller: Poller | None = memo.get("poller")
    if poller is None:
        return {"starting": True}
    ok, age = poller.healthy()
    if not ok:
        raise kopf.PermanentError(f"the store poller has not finished a pass for {age:.0f}s")
    return {"last_pass_seconds_ago": round(age, 1), "leader": poller.elector.leading,
            "error": poller.error}


@kopf.on.event("batch", "v1", "jobs", labels=dict(naming.RUNNER_SELECTOR))
def runner_job_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    executor: KubernetesExecutor | None = memo.get("executor")
    if executor is None:
        return
    data = dict(body)
    if type == "DELETED":
        executor.job_deleted(data)
    else:
        executor.observe_job(data)


@kopf.on.event("", "v1", "pods", labels=dict(naming.RUNNER_SELECTOR))
def runner_pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    executor: KubernetesExecutor | None = memo.get("executor")
    if executor is not None and type != "DELETED":
        executor.observe_pod(dict(body))


def run_operator(settings: Settings, *, liveness: str | None) -> int:
    """Run kopf in this process, namespaced, standalone (the Lease elects the leader)."""
    setup_logging(settings.log_dir)
    log.info("Starting Worker...")
    memo = kopf.Memo(qforge_settings=settings)
    kopf.run(standalone=True, namespaces=[settings.namespace], liveness_endpoint=liveness,
             memo=memo)
    return 0
