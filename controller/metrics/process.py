"""The metrics of one `qforge worker` or `qforge controller` process, and its /metrics
endpoint (prometheus-client's own HTTP server, in a daemon thread)."""

from __future__ import annotations

import logging
import threading
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from qforge.metrics.scheduling import SchedulingMetrics
from qforge.metrics.store import StoreCollector
from qforge.settings import Settings, SettingsError
from qforge.store.jobstore import JobStore

log = logging.getLogger(__name__)


def qforge_version() -> str:
    try:
        return metadata.version("qforge")
    except metadata.PackageNotFoundError:
        return "unknown"


class ProcessMetrics:
    """Everything one process exports, in a registry of its own."""

    def __init__(self, settings: Settings, component: str, *,
                 store: JobStore | None = None) -> None:
        # `_created` series double the size of a scrape and no dashboard here reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Info("qforge_build", "The qforge version and which component this is.",
             registry=self.registry).info({
                 "version": qforge_version(), "component": component,
                 "worker_id": settings.worker_id})
        Gauge("qforge_max_concurrent_jobs", "The concurrency cap (MAX_CONCURRENT_JOBS).",
              registry=self.registry).set(settings.max_concurrent_jobs)
        self.active = Gauge(
            "qforge_active_jobs", "Jobs this process launched and has not yet recorded.",
            registry=self.registry)
        self.scheduling = SchedulingMetrics(self.registry)
        # A store object of its own: a scrape never touches the scheduler's memo.
        self.registry.register(StoreCollector(store or JobStore(settings.jobs_dir)))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def bind_active(self, active: Any) -> None:
        """Read `qforge_active_jobs` from `active()` (the executor's) at each scrape."""
        self.active.set_function(lambda: float(len(active())))

    def serve(self, address: str, port: int) -> int:
        """Start the /metrics endpoint; returns the port it listens on (`port` 0: any free
        one). A port that cannot be used is a settings error (exit 2)."""
        try:
            self._server, self._thread = start_http_server(port, address, self.registry)
        except OSError as exc:
            raise SettingsError(
                f"METRICS_PORT: cannot listen on {address}:{port}: "
                f"{exc.strerror or exc}") from None
        bound = int(self._server.server_address[1])
        log.info("Metrics on http://%s:%d/metrics", address, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
