"""Gauges of the job store, read at each scrape from its index, never from its records.

`qforge_jobs{status}`: from `JobStore.counts()` (the store's index of statuses) when the
store has one; otherwise the queued and running jobs from their markers (one listing of
the queue and running folders: O(queued + running), whatever the number of finished
jobs). Every process sharing the store reports the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import cast

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.record import Status
from controller.store.jobstore import JobStore

log = logging.getLogger(__name__)


def status_counts(store: JobStore) -> tuple[dict[Status, int], bool]:
    """Jobs by status from the store's index, and whether every status is counted (True)
    or only QUEUED and RUNNING, from their markers (False)."""
    counts = getattr(store, "counts", None)
    if callable(counts):
        found = cast(Callable[[], dict[Status, int]], counts)()
        return {s: int(found.get(s, 0)) for s in Status}, True
    return {Status.QUEUED: len(store.queued()),
            Status.RUNNING: len(store.running_markers())}, False


class StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("qforge_jobs", "", labels=["status"]),
                GaugeMetricFamily("qforge_store_up", ""),
                CounterMetricFamily("qforge_jobs_submitted", "")]

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "qforge_store_up", "1 when the job store could be read at this scrape, else 0.")
        try:
            counts, complete = status_counts(self.store)
        except OSError as exc:
            log.warning("Metrics: cannot read the job store %s: %s", self.store.root, exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        jobs = GaugeMetricFamily(
            "qforge_jobs", "Jobs in the store by status (from the store's index).",
            labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status.value.lower()], n)
        out: list[Metric] = [up, jobs]
        if complete:
            out.append(CounterMetricFamily(
                "qforge_jobs_submitted", "Jobs ever submitted to the store (every record).",
                value=sum(counts.values())))
        return out
