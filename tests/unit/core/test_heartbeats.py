"""controller/store/heartbeats.py: the instance name says whether others may recover its
jobs; the workers folder is read and written here only."""

from __future__ import annotations

import os

from qforge.store.heartbeats import (
    Heartbeats,
    beat_ages,
    instance_name,
    others_may_recover,
)
from qforge.store.jobstore import JobStore


def test_an_instance_whose_jobs_run_elsewhere_is_named_so_and_not_recoverable() -> None:
    local = instance_name("worker_1.host.12.ab", others_may_recover=True)
    cluster = instance_name("qf.worker_1", others_may_recover=False)
    assert local == "worker_1.host.12.ab" and others_may_recover(local)
    assert cluster != "qf.worker_1" and not others_may_recover(cluster)
    assert instance_name(cluster, others_may_recover=False) == cluster  # idempotent


def test_beats_are_listed_with_their_age_forgotten_and_retired(store: JobStore) -> None:
    assert beat_ages(store, 0.0) == {}
    a = Heartbeats(store, "a", "worker_1", lease_seconds=60)
    b = Heartbeats(store, "b", "worker_1", lease_seconds=60)
    a.beat(0)
    b.beat(2)
    os.utime(store.layout.workers / "b", (1000.0, 1000.0))
    ages = beat_ages(store, 1010.0)
    assert set(ages) == {"a", "b"} and ages["b"] == 10.0
    assert a.beating() == {"a", "b"}
    a.forget("b")
    assert a.beating() == {"a"}
    a.retire()
    assert a.beating() == set()
