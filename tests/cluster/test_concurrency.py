"""The cap, restarts and two controllers, seen by an independent watch on the API.

A kubernetes-client watch (tests/cluster/helpers.JobWatch) follows every qforge Job of
the namespace from a consistent list onwards; it is the witness for "never more than the
cap unfinished at once" and for "one Job per job".
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from qforge.k8s import naming
from qforge.record import Placement
from qforge.store.heartbeats import instance_name
from qforge.store.jobstore import JobStore
from tests.cluster.helpers import RUN_FOR, JobWatch, Site
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CAP = 3


def _jobs_per_job_id(site: Site) -> Counter[str]:
    """Runner Jobs in the namespace, counted by their qforge.io/job-id label."""
    return Counter(j["metadata"]["labels"][naming.LABEL_JOB_ID] for j in site.k8s_jobs())


def _assert_one_job_each(site: Site, job_ids: list[str], watch: JobWatch) -> None:
    counts = _jobs_per_job_id(site)
    assert {j: counts[j] for j in job_ids} == dict.fromkeys(job_ids, 1)
    assert set(counts) == set(job_ids)
    # the watch saw every Job ever created, including any deleted since
    assert {j: len(watch.names_by_job_id.get(j, ())) for j in job_ids} == dict.fromkeys(
        job_ids, 1)


def test_twenty_jobs_never_exceed_the_cap(site: Site, kube: Any) -> None:
    job_ids = site.submit_many(20)
    with JobWatch(kube, site.namespace) as watch:
        site.controller(MAX_CONCURRENT_JOBS=str(CAP))
        states = site.wait_terminal(job_ids, 240)
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, states
    assert watch.seen() == 20
    print(f"cap {CAP}: max unfinished {watch.max_unfinished}, until counted "
          f"{watch.max_unfinished_until_counted}")
    assert watch.max_unfinished == CAP  # reached, never exceeded
    _assert_one_job_each(site, job_ids, watch)


def test_controller_killed_after_its_first_job_restarts_without_duplicates(
        site: Site, kube: Any) -> None:
    job_ids = site.submit_many(6)
    killed = threading.Event()
    first: dict[str, Any] = {}

    def kill_on_first_job(job: dict[str, Any]) -> None:
        if not killed.is_set():
            first.update(job)
            ctl.kill()  # SIGKILL, from the watch thread, as soon as the Job exists
            killed.set()

    with JobWatch(kube, site.namespace, on_added=kill_on_first_job) as watch:
        ctl = site.controller({RUN_FOR: "3s"}, MAX_CONCURRENT_JOBS=str(CAP))
        wait_until(killed.is_set, 60, "the first Job, then the kill")
        assert not ctl.alive()
        claimed = [j for j in job_ids if site.status(j) == "RUNNING"]
        assert claimed, "the controller claimed nothing before its first Job appeared"
        again = site.controller({RUN_FOR: "3s"}, MAX_CONCURRENT_JOBS=str(CAP))
        states = site.wait_terminal(job_ids, 180)
        again.wait_leading(5)
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, states
    assert watch.max_unfinished <= CAP
    _assert_one_job_each(site, job_ids, watch)
    assert "Resuming job" in again.log_text()


def test_two_controllers_hold_the_cap_and_launch_each_job_once(
        site: Site, kube: Any) -> None:
    job_ids = site.submit_many(12)
    with JobWatch(kube, site.namespace) as watch:
        one = site.controller({RUN_FOR: "2s"}, MAX_CONCURRENT_JOBS=str(CAP))
        two = site.controller({RUN_FOR: "2s"}, MAX_CONCURRENT_JOBS=str(CAP))
        # one leads; when it stops cleanly mid-way, the other takes over its Jobs
        wait_until(lambda: watch.seen() >= 4, 120, "4 Jobs launched")
        leader, standby = (one, two) if "Acquired" in one.log_text() else (two, one)
        assert "Acquired the controller Lease" not in standby.log_text()
        assert leader.stop() == 0
        states = site.wait_terminal(job_ids, 240)
        standby.wait_leading(5)
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, states
    assert watch.max_unfinished == CAP
    _assert_one_job_each(site, job_ids, watch)
    launched_by = Counter(
        ctl.name for ctl in (one, two) for j in job_ids
        if f"Starting execution for job {j}" in ctl.log_text())
    assert sum(launched_by.values()) == len(job_ids)
    assert set(launched_by) == {"controller-1", "controller-2"}, launched_by


def test_claim_recorded_but_job_never_created_is_launched_once(site: Site,
                                                                 kube: Any) -> None:
    """The crash window before the create: the store says RUNNING, the cluster has no
    Job. The restarted controller must create it (once), not take the job for done."""
    job_ids = site.submit_many(2)
    store = JobStore(site.jobs_dir)
    instance = instance_name(f"{site.namespace}.worker_1", others_may_recover=False)
    key = store.queue.queued()[0]
    claimed = store.queue.claim(key, instance, Placement(executor="kubernetes",
                                                    worker_id="worker_1", instance=instance))
    assert claimed is not None and site.status(key.job_id) == "RUNNING"
    with JobWatch(kube, site.namespace) as watch:
        ctl = site.controller()
        states = site.wait_terminal(job_ids, 120)
    assert set(states.values()) == {"COMPLETED"}, states
    _assert_one_job_each(site, job_ids, watch)
    assert f"Resuming job {key.job_id}" in ctl.log_text()
