"""The retry ladder with the Kubernetes executor on the real control plane (kwok plays
the pods): the controller records a timed-out run, queues the job again with twice the
time, and launches a Job of its own for the new attempt (docs/retry.md)."""

from __future__ import annotations

import pytest

from qforge.k8s import naming
from tests.cluster.helpers import RUN_FOR, Site
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def test_a_timed_out_job_runs_again_with_twice_the_deadline_as_a_new_job(
        site: Site) -> None:
    site.controller({RUN_FOR: "300s"})  # no pod ever finishes by itself
    job_id = site.submit("--timeout", "3", "--auto-retry")
    second = naming.job_name(job_id, 2)
    job = wait_until(
        lambda: next((j for j in site.k8s_jobs(job_id) if j["metadata"]["name"] == second),
                     None), 90, "the second attempt's Job")
    assert job["spec"]["activeDeadlineSeconds"] == 6
    assert job["metadata"]["labels"]["qforge.io/attempt"] == "2"
    record = site.wait_status(job_id, "FAILED", 90)  # twice 3 s is still too short
    [first] = record["history"]
    assert (first["status"], first["rung"], first["error"]["type"]) == (
        "FAILED", "longer", "timeout")
    assert record["spec"]["timeout"] == 6.0 and record["error"]["type"] == "timeout"
    # neither Job keeps qforge's finalizer: both outcomes are in the record
    wait_until(lambda: all(naming.FINALIZER not in (j["metadata"].get("finalizers") or ())
                           for j in site.k8s_jobs(job_id)), 60, "the finalizers off")
    shown = site.qforge("show", job_id).stdout
    assert "Attempt 1: FAILED (timeout); then twice the time: 6 s (ladder)" in shown
