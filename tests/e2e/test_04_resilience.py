"""The controller's own failures: its pod deleted mid-run, its process frozen."""

from __future__ import annotations

import signal

from tests.molecules import WATER, alkane
from tests.waiting import wait_until

from .conftest import Release, freeze_container


def _ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def test_controller_pod_deleted_mid_run_resumes_without_loss_or_duplicates(
    release: Release,
) -> None:
    ids = [release.submit(alkane(8), "--name", f"resume-{i}", "--task", "ohess") for i in range(5)]
    wait_until(
        lambda: any(
            p["status"].get("phase") == "Running"
            for p in release.kj("get", "pods", "-l", "app.kubernetes.io/component=runner")["items"]
        ),
        180,
        "a runner pod running",
        interval=1.0,
    )
    old = release.controller_pod()["metadata"]["name"]
    release.k("delete", "pod", old, "--wait=true", "--timeout=90s", timeout=120)

    def new_ready() -> bool:
        try:
            pod = release.controller_pod()
        except Exception:
            return False
        return pod["metadata"]["name"] != old and _ready(pod)

    wait_until(new_ready, 180, "a new controller pod Ready", interval=1.0)
    records = [release.wait_terminal(job_id, timeout=600) for job_id in ids]
    assert [r["status"] for r in records] == ["COMPLETED"] * 5, [
        (r["job_id"], r.get("error")) for r in records
    ]
    for job_id in ids:
        assert len(release.runner_jobs(job_id)) == 1, job_id
        assert release.metadata(job_id)["attempts"] == 1, job_id
    listed = {r["job_id"] for r in release.show_all()}
    assert set(ids) <= listed


def test_frozen_controller_is_restarted_by_its_liveness_probe(release: Release) -> None:
    pod = release.controller_pod()
    name = pod["metadata"]["name"]
    restarts_before = pod["status"]["containerStatuses"][0]["restartCount"]
    freeze_container(release.kube, pod, signal.SIGSTOP)
    job_id = release.submit_when_possible(WATER, "--name", "after-freeze", "--task", "sp")

    def restarted() -> bool:
        p = release.kj("get", "pod", name)
        return int(p["status"]["containerStatuses"][0]["restartCount"]) > restarts_before

    wait_until(restarted, 240, "the kubelet to restart the frozen controller", interval=3)
    events = release.k("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert "Liveness probe failed" in events or "Unhealthy" in events, events
    record = release.wait_terminal(job_id, timeout=300)
    assert record["status"] == "COMPLETED", record
