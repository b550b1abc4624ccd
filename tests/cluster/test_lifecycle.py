"""One calculation's life on the real control plane: the Job the controller creates, and
how each ending of its pod (kwok plays it) lands in the job store."""

from __future__ import annotations

from typing import Any

import pytest

from qforge.k8s import events, naming
from tests.cluster.helpers import EXIT_CODE, REASON, RUN_FOR, Site
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def _only_job(site: Site, job_id: str, timeout: float = 30) -> dict[str, Any]:
    jobs = wait_until(lambda: site.k8s_jobs(job_id), timeout, f"the Job of {job_id}")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


def _events(site: Site, job: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ev in site.events_of("Job", job["metadata"]["name"]):
        out.setdefault(ev["reason"], []).append(ev["message"])
    return out


def test_job_has_every_field_and_completes_with_the_energy(site: Site) -> None:
    ctl = site.controller(SUCCESS_EVENTS="true")  # a success's Event is a setting
    job_id = site.submit_succeeding("--task", "sp", "--cpu", "2", "--memory", "512Mi",
                                    "--timeout", "900", "--label", "project=water")
    expected = site.results.success(site.spec(job_id))
    job = _only_job(site, job_id)

    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == naming.job_name(job_id)
    assert meta["labels"] == {
        "app.kubernetes.io/name": "qforge",
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/managed-by": "qforge-controller",
        "app.kubernetes.io/instance": "qforge",  # the release (RELEASE, default qforge)
        "qforge.io/job-id": job_id,
        "qforge.io/attempt": "1",
        "qforge.io/method": "gfn2",
        "qforge.io/task": "sp",
        "qforge.io/formula": "H2O",
        # the record's group (a submit without --group names one: stdin-<time>)
        "qforge.io/group": site.record(job_id)["group"],
        "project": "water",
    }
    assert {k: meta["annotations"][k] for k in
            ("qforge.io/method", "qforge.io/task", "qforge.io/formula", "qforge.io/job-id")
            } == {"qforge.io/method": "gfn2", "qforge.io/task": "sp",
                  "qforge.io/formula": "H2O", "qforge.io/job-id": job_id}
    # the controller's own watch writes nothing on the Jobs it watches (no kopf marks);
    # no finalizer and no TTL: the controller alone deletes the Job, once its outcome is
    # in the store (JOB_KEEP_SECONDS later)
    assert not [k for k in meta["annotations"] if k.startswith("kopf.")]
    assert "finalizers" not in meta
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["backoffLimit"] == 0
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
    assert any(r["action"] == "FailJob" and r["onExitCodes"]["values"] == [1, 2]
               for r in rules)
    assert "ttlSecondsAfterFinished" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "qforge-runner:test"
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "512Mi"},
                                      "limits": {"cpu": "2", "memory": "512Mi"}}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "privileged": False,
        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMP_NUM_THREADS"] == "2"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/job"]["subPath"] == job_id
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/job"]["name"]]["persistentVolumeClaim"] == {
        "claimName": "qforge-jobs"}
    assert "emptyDir" in volumes[mounts["/scratch"]["name"]]

    record = site.wait_status(job_id, "COMPLETED", 60)
    assert record["result"]["energy"] == pytest.approx(expected.result.energy, abs=1e-9)
    assert record["placement"]["k8s_job"] == meta["name"]
    assert record["placement"]["node"].startswith("kwok-node-")
    shown = site.qforge("show", job_id).stdout
    assert "COMPLETED" in shown and f"Kubernetes Job {meta['name']}" in shown

    found = wait_until(lambda: (e := _events(site, job)) and events.REASON_COMPLETED in e and e,
                       30, "the Completed Event")
    assert events.REASON_LAUNCHED not in found  # LAUNCH_EVENTS is off by default: one write fewer
    (completed,) = [m for m in found[events.REASON_COMPLETED] if job_id in m]
    assert f"{expected.result.energy:.8f} Eh" in completed
    # the outcome is recorded: the Job stays for JOB_KEEP_SECONDS (300 s), for kubectl
    assert [j["metadata"]["name"] for j in site.k8s_jobs(job_id)] == [meta["name"]]
    # what README's "Kubernetes" section and the chart's NOTES tell people to type
    described = site.kubectl("describe", "job", "-l", f"qforge.io/job-id={job_id}").stdout
    assert f"{expected.result.energy:.8f} Eh" in described
    table = site.kubectl("get", "jobs", "-l", "app.kubernetes.io/name=qforge",
                         "-L", "qforge.io/method", "-L", "qforge.io/task").stdout
    assert meta["name"] in table and "gfn2" in table.split(meta["name"])[1].split("\n")[0]
    assert ctl.alive()


def test_pod_outliving_its_deadline_fails_as_timeout(site: Site) -> None:
    site.controller({RUN_FOR: "300s"})
    job_id = site.submit("--timeout", "3")
    job = _only_job(site, job_id)
    assert job["spec"]["activeDeadlineSeconds"] == 3
    record = site.wait_status(job_id, "FAILED", 60)
    assert record["error"]["type"] == "timeout", record["error"]
    assert "activeDeadlineSeconds" in record["error"]["message"]
    reasons = [c.get("reason") for c in site.k8s_jobs(job_id)[0]["status"]["conditions"]]
    assert "DeadlineExceeded" in reasons  # the real Job controller's verdict
    failed = wait_until(lambda: _events(site, job).get(events.REASON_FAILED), 30,
                        "the Failed Event")
    assert "(timeout)" in failed[0]


def test_oom_killed_pod_fails_as_resource_error(site: Site) -> None:
    site.controller({EXIT_CODE: "137", REASON: "OOMKilled"})
    job_id = site.submit()
    record = site.wait_status(job_id, "FAILED", 60)
    assert record["error"]["type"] == "resource_error", record["error"]
    assert "OOMKilled" in record["error"]["message"]


def test_runner_input_error_is_passed_through(site: Site) -> None:
    site.controller({EXIT_CODE: "1"})
    job_id = site.submit()
    site.write_result(job_id, site.results.input_error(
        "xtb rejected the input: charge and multiplicity do not fit"))
    record = site.wait_status(job_id, "FAILED", 60)
    assert (record["error"]["type"], record["error"]["message"]) == (
        "input_error", "xtb rejected the input: charge and multiplicity do not fit")
    reasons = [c.get("reason") for c in site.k8s_jobs(job_id)[0]["status"]["conditions"]]
    assert "PodFailurePolicy" in reasons  # failed at once by the FailJob rule


def test_cancel_deletes_the_job(site: Site) -> None:
    site.controller({RUN_FOR: "300s"})
    job_id = site.submit()
    job = _only_job(site, job_id)
    wait_until(lambda: site.status(job_id) == "RUNNING", 30, "RUNNING")
    out = site.qforge("cancel", job_id).stdout
    assert "Cancel requested" in out
    record = site.wait_status(job_id, "CANCELLED", 60)
    assert record["error"]["type"] == "cancelled"
    wait_until(lambda: not site.k8s_jobs(job_id), 30, "the Job to be gone")
    assert site.kubectl("get", "job", job["metadata"]["name"], check=False).returncode != 0


def test_job_deleted_by_hand_fails_with_infrastructure_error(site: Site) -> None:
    site.controller({RUN_FOR: "300s"})
    job_id = site.submit()
    job = _only_job(site, job_id)
    wait_until(lambda: site.status(job_id) == "RUNNING", 30, "RUNNING")
    site.kubectl("delete", "job", job["metadata"]["name"])
    record = site.wait_status(job_id, "FAILED", 60)
    assert record["error"]["type"] == "infrastructure_error"
    assert "deleted" in record["error"]["message"]
    assert job["metadata"]["name"] in record["error"]["message"]
    shown = site.qforge("show", job_id).stdout
    assert "was deleted" in shown


def test_show_says_why_jobs_wait_unschedulable_pod_and_cap_reached(site: Site) -> None:
    site.controller(MAX_CONCURRENT_JOBS="1")
    job_id = site.submit("--cpu", "16")  # every kwok node has 4
    behind = site.submit()

    def says_why() -> str | None:
        out = site.qforge("show", job_id).stdout
        return out if "Unschedulable" in out else None

    shown = wait_until(says_why, 60, "`qforge show` to say why the job waits")
    assert "Insufficient cpu" in shown
    assert site.status(job_id) == "RUNNING"
    assert "Insufficient cpu" in site.record(job_id)["waiting_reason"]
    # the one slot is held by the Pending pod's Job: the next job waits for the cap.
    # (`qforge show` states the cap of its own settings: in the cluster it runs in the
    # controller's pod, `kubectl exec deploy/qforge -- qforge show`, with the same ones.)
    queued = site.qforge("show", behind, MAX_CONCURRENT_JOBS="1").stdout
    assert site.status(behind) == "QUEUED"
    assert "queue position 1 of 1" in queued and "the cap is 1" in queued, queued
    # worded for a cluster (the controller's heartbeat is on the store): no local worker
    assert "for the controller" in queued and "qforge worker" not in queued, queued
