"""The controller process itself: its liveness endpoint, and the PodSecurity level its
runner pods must pass."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.request

import pytest

from qforge.k8s import naming
from qforge.k8s.manifests import build_job_manifest
from qforge.settings import Settings
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.cluster.helpers import PVC_NAME, RUNNER_IMAGE, WATER, Site
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def test_liveness_answers_while_healthy_and_fails_when_the_leader_loop_is_stuck(
        site: Site) -> None:
    ctl = site.controller()
    ctl.wait_leading()
    wait_until(lambda: ctl.health() == 200, 30, "the liveness endpoint to answer 200")
    with urllib.request.urlopen(ctl.health_url, timeout=5) as resp:
        probe = json.loads(resp.read())
    assert probe["leader_loop"]["leader"] is True
    assert probe["leader_loop"]["last_pass_seconds_ago"] <= 3 * 0.5

    # A job folder whose metadata.json is a FIFO: the leader loop's next index refresh opens
    # it for reading and blocks there until someone writes.
    folder = site.jobs_dir / "stuck_fifo"
    folder.mkdir()
    fifo = folder / "metadata.json"
    os.mkfifo(fifo)
    try:
        code = wait_until(lambda: (c := ctl.health()) is not None and c != 200 and c, 45,
                          "the liveness endpoint to fail")
        assert code >= 500
        assert ctl.alive()
    finally:
        with contextlib.suppress(OSError):  # let the blocked reader go
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"{}")
            os.close(fd)
    wait_until(lambda: ctl.health() == 200, 30, "the liveness endpoint to recover")
    shutil.rmtree(folder)
    assert "metadata.json is unreadable" in ctl.log_text()
    assert "Health check: active_jobs=0, status=healthy, worker=worker_1" in ctl.log_text()


def test_namespace_enforces_restricted_and_admits_runner_pods(site: Site) -> None:
    labels = site.kubectl_json("get", "namespace", site.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    bad = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "not-restricted", "namespace": site.namespace},
           "spec": {"containers": [{"name": "c", "image": RUNNER_IMAGE,
                                    "securityContext": {"privileged": True}}]}}
    proc = site.cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted' in proc.stderr

    settings = Settings(namespace=site.namespace, runner_image=RUNNER_IMAGE,
                        pvc_name=PVC_NAME)
    spec = JobSpec(molecule=parse_xyz(WATER))
    job = build_job_manifest("psa_probe_1", spec, settings)
    site.cluster.apply(job)
    pods = wait_until(lambda: site.kubectl_json(
        "get", "pods", "-l", naming.selector("psa_probe_1"))["items"], 30,
        "the runner pod to be admitted")
    assert pods[0]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] is True
    events = site.events_of("Job", job["metadata"]["name"])
    assert not [e for e in events if e["reason"] == "FailedCreate"], events
