"""What the controller keeps of a watched Job or pod: every field it reads, and not the
pod template nor managedFields (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any

from qforge.k8s import naming
from qforge.k8s.compact import compact_job, compact_pod
from qforge.k8s.manifests import build_job_manifest
from qforge.k8s.status import failure_error, job_end_state, pod_view
from qforge.k8s.view import JobView, holds_slot
from qforge.settings import Settings
from qforge_runner.spec import JobSpec
from tests.molecules import WATER

JOB_ID = "water_20261128_133039_k3f9"
MANAGED = [{"manager": "kube-controller-manager", "operation": "Update",
            "fieldsV1": {f"f:field{i}": {} for i in range(60)}}]


def served_job(**status: Any) -> dict[str, Any]:
    """The runner's Job as the API server serves it back."""
    job = build_job_manifest(JOB_ID, JobSpec(molecule=WATER),
                             Settings(ttl_seconds_after_finished=3600), attempt=1)
    job["metadata"].update(uid="u-1", resourceVersion="42", managedFields=MANAGED,
                           creationTimestamp="2026-12-01T10:00:00Z")
    job["status"] = status
    return job


def served_pod(**status: Any) -> dict[str, Any]:
    job = served_job()
    return {"metadata": {"name": "p-1", "uid": "pu-1", "managedFields": MANAGED,
                         "labels": {**job["metadata"]["labels"],
                                    "batch.kubernetes.io/job-name": job["metadata"]["name"]},
                         "ownerReferences": [{"kind": "Job", "name": job["metadata"]["name"],
                                              "uid": "u-1", "controller": True,
                                              "apiVersion": "batch/v1"}]},
            "spec": {**job["spec"]["template"]["spec"], "nodeName": "node-a"},
            "status": status}


def test_a_compact_job_answers_every_question_as_the_whole_one() -> None:
    failed = {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
         "message": "Job was active longer than specified deadline"}]}
    for status in ({}, {"active": 1}, {"succeeded": 1}, failed):
        whole = served_job(**status)
        small = compact_job(copy.deepcopy(whole))
        assert holds_slot(small) == holds_slot(whole)
        assert job_end_state(small) == job_end_state(whole)
        assert naming.job_id_from_metadata(small["metadata"]) == JOB_ID
        assert small["metadata"]["finalizers"] == [naming.FINALIZER]
        assert small["metadata"]["uid"] == "u-1"
        if job_end_state(whole) == "Failed":
            assert failure_error(small, None, None) == failure_error(whole, None, None)
        view_whole, view_small = JobView(), JobView()
        view_whole.replace([whole], 0.0)
        view_small.replace([small], 0.0)
        name = whole["metadata"]["name"]
        assert view_small.state(name) == view_whole.state(name)
        assert "template" not in small["spec"] and "managedFields" not in small["metadata"]
        assert len(json.dumps(small)) * 3 < len(json.dumps(whole))


def test_a_compact_pod_gives_the_same_view() -> None:
    for status in ({"phase": "Pending", "conditions": [
                       {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient cpu."}]},
                   {"phase": "Running"},
                   {"phase": "Failed", "containerStatuses": [
                       {"name": "runner", "state": {"terminated": {
                           "reason": "OOMKilled", "exitCode": 137}}}]}):
        whole = served_pod(**status)
        small = compact_pod(copy.deepcopy(whole))
        assert pod_view(small) == pod_view(whole)
        assert small["metadata"]["ownerReferences"] == [
            {"kind": "Job", "name": whole["metadata"]["ownerReferences"][0]["name"],
             "uid": "u-1"}]
        assert len(json.dumps(small)) * 3 < len(json.dumps(whole))
