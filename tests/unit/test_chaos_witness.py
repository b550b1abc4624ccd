"""tests/chaos/witness.py: how the chaos test tells a pod it interrupted from one that
ended on its own as it was deleted (the lifetime kwok drew ran out in the same instant:
no replacement comes, and the deletion must not count)."""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient, Configuration

from qforge.k8s.naming import LABEL_JOB_ID
from tests.chaos.witness import Witness

JOB = "h2o_20261201_202832_wpdb"


def _witness() -> Witness:
    # no thread is started: the watches' callbacks are fed by hand
    return Witness(lambda: ApiClient(Configuration()), "chaos")


def _pod(name: str, phase: str, exit_code: int | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code}}
    return {"metadata": {"name": name, "labels": {LABEL_JOB_ID: JOB}},
            "status": {"phase": phase, "containerStatuses": [{"state": state}]}}


def _job(succeeded: int) -> dict[str, Any]:
    return {"metadata": {"name": "qf-wpdb", "labels": {LABEL_JOB_ID: JOB}},
            "status": {"succeeded": succeeded}}


def _pods(w: Witness, *pods: dict[str, Any]) -> None:
    with w.pods.lock:
        w._pods_changed({p["metadata"]["name"]: p for p in pods})


def test_nothing_is_known_while_the_deleted_pod_still_runs() -> None:
    w = _witness()
    _pods(w, _pod("p1", "Running"))
    assert w.deletion_outcome("p1", JOB) is None


def test_a_pod_ended_by_the_deletion_was_interrupted() -> None:
    w = _witness()
    _pods(w, _pod("p1", "Failed", 143))
    assert w.pod_exit == {"p1": 143}
    assert w.deletion_outcome("p1", JOB) == "interrupted"


def test_the_first_end_seen_decides_not_a_later_patch() -> None:
    w = _witness()
    _pods(w, _pod("p1", "Succeeded", 0))  # its lifetime ran out as it was deleted
    _pods(w, _pod("p1", "Failed", 143))  # kwok's deletion stage, a moment later
    assert w.pod_exit == {"p1": 0}
    assert w.deletion_outcome("p1", JOB) == "finished"


def test_a_replacement_pod_means_interrupted_even_unseen_ending() -> None:
    w = _witness()
    _pods(w, _pod("p1", "Running"))
    _pods(w, _pod("p2", "Running"))  # p1 gone while the watch was down
    assert w.deletion_outcome("p1", JOB) == "interrupted"


def test_a_job_that_succeeded_with_the_deleted_pod_alone_finished() -> None:
    w = _witness()
    _pods(w, _pod("p1", "Running"))
    with w.jobs.lock:
        w._jobs_changed({"qf-wpdb": _job(succeeded=1)})
    assert w.deletion_outcome("p1", JOB) == "finished"
