"""`qforge worker`: the original polling worker on the scheduling core."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from controller.scheduling.core import Scheduler
from controller.scheduling.local import LocalExecutor
from controller.settings import Settings
from controller.store.jobstore import JobStore

log = logging.getLogger("controller.worker")


def run_worker(settings: Settings, *, until_idle: bool = False) -> int:
    """Run until SIGTERM/SIGINT (or until idle). SIGTERM finishes cleanly: no new jobs
    are claimed, running calculations are stopped and put back in the queue, the
    heartbeat is removed, and the exit code is 0."""
    log.info("Starting Worker...")
    store = JobStore(settings.jobs_dir)
    executor = LocalExecutor(store, settings)
    scheduler = Scheduler(store, executor, settings, write_behind=True)
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
        log.info("Worker stopped")
    return 0
