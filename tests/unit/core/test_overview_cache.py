"""The overviews a server's readers share (qforge.service.overview): reused within their
TTL, computed by one request at a time, the previous one answering while it is computed
again, dropped by a write through the same door."""

from __future__ import annotations

import threading
from pathlib import Path

from qforge.auth.roles import Identity, Role
from qforge.inputs import ReadMolecule, Where
from qforge.record import Status
from qforge.service.manager import JobManager
from qforge.service.models import Overview, SubmitOptions
from qforge.service.overview import OverviewCache
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from tests.molecules import METHANE, WATER_EXPERIMENTAL

from .campaign_helpers import finish

WAIT = 30.0  # every wait bounded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def overview(n: int) -> Overview:
    counts = dict.fromkeys(Status, 0)
    counts[Status.QUEUED] = n
    return Overview(group="g", counts=counts, finished_in_window=0, window_minutes=10.0)


def queued(o: Overview) -> int:
    return o.counts[Status.QUEUED]


def test_reused_within_its_ttl_and_computed_again_after() -> None:
    clock = Clock()
    cache = OverviewCache(ttl=2.0, stale=30.0, clock=clock)
    calls: list[int] = []

    def compute() -> Overview:
        calls.append(1)
        return overview(len(calls))

    assert queued(cache.get("g", compute)) == 1
    clock.now += 1.9
    assert queued(cache.get("g", compute)) == 1 and len(calls) == 1
    clock.now += 0.2
    assert queued(cache.get("g", compute)) == 2  # nobody else computing: this one does
    assert queued(cache.get("other", compute)) == 3  # one entry per key
    cache.clear()
    assert queued(cache.get("g", compute)) == 4


def test_concurrent_readers_of_an_empty_cache_share_one_computation() -> None:
    cache = OverviewCache(ttl=2.0, clock=Clock())
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def compute() -> Overview:
        calls.append(1)
        entered.set()
        assert release.wait(WAIT)
        return overview(7)

    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(queued(cache.get("g", compute))))
               for _ in range(20)]
    for t in threads:
        t.start()
    assert entered.wait(WAIT)
    release.set()
    for t in threads:
        t.join(WAIT)
    assert answers == [7] * 20 and len(calls) == 1


def test_the_previous_overview_answers_while_it_is_computed_again() -> None:
    clock = Clock()
    cache = OverviewCache(ttl=2.0, stale=30.0, clock=clock)
    cache.get("g", lambda: overview(1))
    clock.now += 5.0  # older than the TTL, younger than `stale`
    entered, release = threading.Event(), threading.Event()

    def slow() -> Overview:
        entered.set()
        assert release.wait(WAIT)
        return overview(2)

    refresher = threading.Thread(target=cache.get, args=("g", slow))
    refresher.start()
    assert entered.wait(WAIT)
    # while the refresh runs, a reader is answered at once with the previous overview
    assert queued(cache.get("g", lambda: overview(99))) == 1
    release.set()
    refresher.join(WAIT)
    assert queued(cache.get("g", lambda: overview(99))) == 2


def test_an_overview_computed_across_a_write_is_not_kept() -> None:
    cache = OverviewCache(ttl=2.0, clock=Clock())

    def during_a_write() -> Overview:
        cache.clear()  # a submission through the same door while this one read the store
        return overview(1)

    assert queued(cache.get("g", during_a_write)) == 1  # its own request is answered
    assert queued(cache.get("g", lambda: overview(2))) == 2  # but nobody after it


def test_a_failed_computation_is_not_kept() -> None:
    cache = OverviewCache(ttl=2.0, clock=Clock())

    def boom() -> Overview:
        raise RuntimeError("store unreadable")

    for _ in range(2):  # the flight is released: the second call computes again
        try:
            cache.get("g", boom)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the error was swallowed")
    assert queued(cache.get("g", lambda: overview(3))) == 3


def _mol(xyz: str, name: str) -> ReadMolecule:
    return ReadMolecule(molecule=parse_xyz(xyz), name=name, where=Where("lib.xyz", 1, 1))


def test_the_manager_shares_overviews_and_a_write_through_it_drops_them(
        tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    settings = Settings(jobs_dir=tmp_path / "jobs")
    clock = Clock()
    cache = OverviewCache(ttl=2.0, clock=clock)
    alice = JobManager(store, Identity(name="alice", role=Role.submitter), settings,
                       overviews=cache)
    bob = JobManager(store, Identity(name="bob", role=Role.viewer), settings,
                     overviews=cache)
    options = SubmitOptions(group="g", spec={"task": "sp"})
    alice.submit([_mol(WATER_EXPERIMENTAL, "water")], options)
    assert bob.overview("g").counts[Status.QUEUED] == 1

    # the worker's change is seen once the TTL has passed ...
    (job,) = store.groups.ids("g")
    finish(store, job, Status.COMPLETED)
    assert bob.overview("g").counts[Status.QUEUED] == 1
    clock.now += 2.5
    after = bob.overview("g")
    assert (after.counts[Status.QUEUED], after.counts[Status.COMPLETED]) == (0, 1)

    # ... a submission through the same door at once
    alice.submit([_mol(METHANE, "methane")], options)
    after = bob.overview("g")
    assert (after.counts[Status.QUEUED], after.counts[Status.COMPLETED]) == (1, 1)
    # and the same answer as without the cache
    fresh = JobManager(store, Identity(name="bob", role=Role.viewer), settings).overview("g")
    assert fresh.counts == after.counts
