"""`qforge worker`: the original polling worker on the scheduling core."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.settings import Settings
from qforge.store.jobstore import JobStore

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are served
    from qforge.metrics.process import ProcessMetrics

log = logging.getLogger(__name__)


def start_metrics(settings: Settings, active: Callable[[], set[str]]
                  ) -> ProcessMetrics | None:
    """The worker's /metrics endpoint, when METRICS_PORT / --metrics-port is set."""
    if settings.metrics_port is None:
        return None
    from qforge.metrics.process import ProcessMetrics

    metrics = ProcessMetrics(settings, "worker")
    metrics.bind_active(active)
    metrics.serve(settings.metrics_address, settings.metrics_port)
    return metrics


def run_worker(settings: Settings, *, until_idle: bool = False) -> int:
    """Run until SIGTERM/SIGINT (or until idle). SIGTERM finishes cleanly: no new jobs
    are claimed, running calculations are stopped and put back in the queue, the
    heartbeat is removed, and the exit code is 0."""
    log.info("Starting Worker...")
    store = JobStore(settings.jobs_dir)
    executor = LocalExecutor(store, settings)
    metrics = start_metrics(settings, executor.active)
    scheduler = Scheduler(store, executor, settings, write_behind=True,
                          observer=metrics.scheduling if metrics else None)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s: stopping (running jobs go back to the queue)",
                 signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.start()
        log.info("Worker %s (instance %s), max %d concurrent jobs, store %s",
                 settings.worker_id, scheduler.instance, settings.max_concurrent_jobs,
                 settings.jobs_dir)
        scheduler.run(stop, until_idle=until_idle)
    finally:
        scheduler.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if metrics is not None:
            metrics.close()
        log.info("Worker stopped")
    return 0
