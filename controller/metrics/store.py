"""Gauges of the job store, from its index, never from its records.

`qforge_jobs{status}`: queued and running from their markers at each scrape (one listing
of the queue and running folders: O(queued + running)); completed, failed and cancelled
from `JobStore.queries.counts()` (the done markers, one listing per status), refreshed off the
scrape: a scrape stats the three done folders (O(1)); when one changed since its last
count, a background thread counts again (at most one at a time, at most every
REFRESH_MIN_SECONDS, and at least every REFRESH_MAX_SECONDS), and the scrape answers with
the last count. So a scrape of a store with 100,000 finished jobs costs what one of an
empty store does, and the finished counts trail the store by a few seconds at most.
Every process sharing the store reports the same values.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qforge.record import TERMINAL, Status
from qforge.store.jobstore import JobStore

log = logging.getLogger(__name__)

REFRESH_MIN_SECONDS = 2.0
REFRESH_MAX_SECONDS = 300.0
# A listing taken this soon after its folder's last change may have missed an entry
# with the same (coarse) mtime: count again (the store's own rule for its listings).
MTIME_MARGIN = 1.0

Signature = tuple[tuple[int, int], ...]


class StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store  # the scrape's: queued and running
        self._counter = JobStore(store.root)  # the refresh thread's: the done markers
        self._lock = threading.Lock()
        self._terminal: dict[Status, int] | None = None
        self._sig: Signature | None = None
        self._counted_wall = 0.0
        self._counted_mono = -1e18
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------- terminal counts
    def _signature(self) -> Signature:
        sig = []
        for status in sorted(TERMINAL):
            try:
                st = os.stat(self.store.layout.done(status.value))
                sig.append((st.st_ino, st.st_mtime_ns))
            except FileNotFoundError:
                sig.append((0, 0))
        return tuple(sig)

    def _count(self) -> None:
        sig = self._signature()
        wall, mono = time.time(), time.monotonic()
        counts = self._counter.queries.counts()
        with self._lock:
            self._terminal = {s: counts.get(s, 0) for s in sorted(TERMINAL)}
            self._sig, self._counted_wall, self._counted_mono = sig, wall, mono

    def _refresh_in_background(self) -> None:
        try:
            self._count()
        except OSError as exc:
            log.warning("Metrics: cannot count the finished jobs of %s: %s",
                        self.store.root, exc)
        finally:
            with self._lock:
                self._thread = None

    def terminal_counts(self) -> dict[Status, int]:
        """The last count of completed, failed and cancelled jobs; a count in the
        background when the done folders changed since (the first count is made here)."""
        with self._lock:
            known = self._terminal
        if known is None:
            self._count()
            with self._lock:
                assert self._terminal is not None
                return dict(self._terminal)
        sig = self._signature()
        newest = max((m for _, m in sig), default=0) / 1e9
        with self._lock:
            age = time.monotonic() - self._counted_mono
            stale = (sig != self._sig or self._counted_wall - newest <= MTIME_MARGIN
                     or age >= REFRESH_MAX_SECONDS)
            if stale and age >= REFRESH_MIN_SECONDS and self._thread is None:
                self._thread = threading.Thread(target=self._refresh_in_background,
                                                name="metrics-store-count", daemon=True)
                self._thread.start()
            return dict(known)

    # ----------------------------------------------------------------- collect
    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("qforge_jobs", "", labels=["status"]),
                GaugeMetricFamily("qforge_store_up", ""),
                CounterMetricFamily("qforge_jobs_submitted", "")]

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "qforge_store_up", "1 when the job store could be read at this scrape, else 0.")
        try:
            # QUEUED: in the queue, and waiting for other jobs (docs/ensembles.md)
            counts = {Status.QUEUED: len(self.store.queue.queued())
                      + self.store.waiting.count(),
                      Status.RUNNING: len(self.store.queue.running_markers()),
                      **self.terminal_counts()}
        except OSError as exc:
            log.warning("Metrics: cannot read the job store %s: %s", self.store.root, exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        jobs = GaugeMetricFamily(
            "qforge_jobs", "Jobs in the store by status (from the store's index).",
            labels=["status"])
        for status in Status:
            jobs.add_metric([status.value.lower()], counts[status])
        submitted = CounterMetricFamily(
            "qforge_jobs_submitted",
            "Jobs in the store, whatever their status: every job submitted to it (falls "
            "only when jobs are deleted from the store).", value=sum(counts.values()))
        return [up, jobs, submitted]
