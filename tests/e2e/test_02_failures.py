"""Failures through the real machinery: the Job's deadline, the cgroup's OOM killer."""

from __future__ import annotations

from tests.molecules import alkane
from tests.waiting import wait_until

from .conftest import Release


def _failed_condition(job: dict) -> dict:
    conds = [
        c
        for c in job["status"].get("conditions", [])
        if c["type"] == "Failed" and c["status"] == "True"
    ]
    assert conds, job["status"]
    return dict(conds[0])


def test_timeout_through_active_deadline_seconds(release: Release) -> None:
    # C30H62 ohess needs minutes (C10, ~17 s on a busy core, finished within 5 s on an
    # idle kind node); its Job's activeDeadlineSeconds is 5.
    job_id = release.submit(alkane(30), "--name", "too-slow", "--task", "ohess", "--timeout", "5")
    [job] = wait_until(lambda: release.runner_jobs(job_id), 60, "its Job", interval=1.0)
    assert job["spec"]["activeDeadlineSeconds"] == 5
    record = release.wait_terminal(job_id, timeout=240)
    assert record["status"] == "FAILED", record
    assert record["error"]["type"] == "timeout", record["error"]
    [job] = release.runner_jobs(job_id)
    assert _failed_condition(job)["reason"] == "DeadlineExceeded"


def test_too_little_memory_is_oomkilled_and_a_resource_error(release: Release) -> None:
    # C60H122 ohess grows past 90 MB; the pod's memory limit is 64Mi.
    job_id = release.submit(
        alkane(60), "--name", "too-big", "--task", "ohess", "--memory", "64Mi", "--timeout", "600"
    )
    record = release.wait_terminal(job_id, timeout=400)
    assert record["status"] == "FAILED", record
    assert record["error"]["type"] == "resource_error", record["error"]
    assert (
        "OOMKilled" in record["error"]["message"] or "memory" in record["error"]["message"].lower()
    )
    [job] = release.runner_jobs(job_id)
    pods = release.kj("get", "pods", "-l", f"job-name={job['metadata']['name']}")["items"]
    reasons = [
        (cs.get("state", {}).get("terminated") or {}).get("reason")
        for p in pods
        for cs in p["status"].get("containerStatuses", [])
    ]
    assert "OOMKilled" in reasons, reasons
