"""`helm test` (which leaves nothing in the store), then `helm uninstall` keeps the job store
(runs last: it removes the release)."""

from __future__ import annotations

import json

from tests.waiting import wait_until

from .conftest import NAMESPACE, PVC, RELEASE, Release


def test_helm_test_passes(release: Release) -> None:
    proc = release.kube.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "10m", check=False,
                             timeout=660)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Phase:          Succeeded" in proc.stdout or "Succeeded" in proc.stdout, proc.stdout
    # the test deleted its own job: the user's store keeps nothing of it
    left = [r["job_id"] for r in release.show_all() if r.get("group") == "helm-test"]
    assert left == [], f"helm test left its job(s) in the store: {left}"


def test_helm_uninstall_keeps_the_job_data(release: Release) -> None:
    done = [r for r in release.show_all() if r["status"] == "COMPLETED"]
    assert done, "no completed job to keep"
    job_id = done[0]["job_id"]
    release.kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    release.installed = False
    pvc = release.kj("get", "pvc", PVC)
    assert pvc["status"]["phase"] == "Bound"
    # read the store back through a fresh pod on the kept claim
    reader = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "read-store", "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "cat",
                    "image": release.controller_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["cat", f"/jobs/{job_id}/metadata.json"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "jobs", "mountPath": "/jobs", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "jobs", "persistentVolumeClaim": {"claimName": PVC}}],
        },
    }
    release.kube.apply(reader)
    try:
        wait_until(
            lambda: (
                release.kj("get", "pod", "read-store")["status"].get("phase")
                in ("Succeeded", "Failed")
            ),
            180,
            "the reader pod",
            interval=1.0,
        )
        meta = json.loads(release.k("logs", "read-store").stdout)
    finally:
        release.k("delete", "pod", "read-store", "--wait=false", check=False)
    assert meta["job_id"] == job_id and meta["status"] == "COMPLETED"
    if release.host_store is not None:
        assert (release.host_store / job_id / "result.json").is_file()
