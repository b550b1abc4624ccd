"""One release, one scope; restarts that neither wait nor relaunch: on the real API.

- two releases in one namespace: their own store, cap and Lease; neither counts nor
  adopts the other's Jobs;
- the TTL window: a Job created, finished and deleted by its TTL while no controller
  ran is still there (qforge's finalizer) for the next controller to record, never
  launched again;
- a Lease held by a controller pod that no longer exists is taken at once.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qforge.k8s import naming
from qforge.k8s.leader import ANNOTATION_HOLDER_POD, ANNOTATION_HOLDER_UID
from qforge.k8s.manifests import build_job_manifest
from qforge.record import Placement
from qforge.settings import Settings
from qforge.store.heartbeats import instance_name
from qforge.store.jobstore import JobStore
from tests.cluster.helpers import PVC_NAME, RUN_FOR, JobWatch, Site
from tests.cluster.test_scale import SMALL, submit_direct
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def test_two_releases_in_one_namespace_keep_their_own_store_cap_and_leader(
        site: Site, kube: Any, tmp_path: Path) -> None:
    # release "green": a second store on its own volume and claim in the same namespace
    green = Site(site.cluster, site.namespace, tmp_path / "green-jobs", tmp_path / "green",
                 site.results, pv_name=f"{site.namespace}-green")
    green.jobs_dir.mkdir(parents=True)
    green.tmp.mkdir(parents=True)
    green.bind_store("green-jobs")
    blue_ids = submit_direct(site, 12)
    green_ids = submit_direct(green, 12)
    try:
        with JobWatch(kube, site.namespace) as watch:
            blue = site.controller({RUN_FOR: "2s"}, RELEASE="blue", MAX_CONCURRENT_JOBS="2",
                                   **SMALL)
            other = green.controller({RUN_FOR: "2s"}, RELEASE="green", PVC_NAME="green-jobs",
                                     MAX_CONCURRENT_JOBS="4", **SMALL)
            blue_states = site.wait_terminal(blue_ids, 240)
            green_states = green.wait_terminal(green_ids, 240)
            blue.wait_leading(5)
            other.wait_leading(5)  # both lead at once: a Lease each
        assert set(blue_states.values()) == set(green_states.values()) == {"COMPLETED"}
        by_release = Counter(j["metadata"]["labels"][naming.LABEL_INSTANCE]
                             for j in watch.jobs.values())
        assert by_release == {"blue": 12, "green": 12}
        assert {j: len(watch.names_by_job_id[j]) for j in blue_ids + green_ids} == \
            dict.fromkeys(blue_ids + green_ids, 1)
        leases = {item["metadata"]["name"]: item["spec"]["holderIdentity"] for item in
                  site.kubectl_json("get", "leases")["items"]}
        assert {"blue-controller", "green-controller"} <= set(leases)
        # each ran its own store's jobs only, and never adopted the other's
        assert not [j for j in green_ids if j in blue.log_text()]
        assert not [j for j in blue_ids if j in other.log_text()]
        assert "Resuming job" not in blue.log_text() + other.log_text()
    finally:
        for ctl in green.controllers:
            ctl.stop()
        green.cluster.kubectl("delete", "pv", green.pv_name, "--wait=false", check=False)


def test_a_job_its_ttl_removed_while_no_controller_ran_is_recorded_not_relaunched(
        site: Site, kube: Any) -> None:
    """The controller claimed the job and created its Job, then stopped before it wrote
    the Job's name into the record; the Job ran, finished, and its TTL (2 s) came while
    no controller ran. Without the finalizer the Job would be gone and the next
    controller, finding neither Job nor name, would launch the job again."""
    (job_id,) = submit_direct(site, 1)
    store = JobStore(site.jobs_dir)
    instance = instance_name(f"{site.namespace}.worker_1", others_may_recover=False)
    claimed = store.queue.claim(store.queue.queued()[0], instance, Placement(
        executor="kubernetes", worker_id="worker_1", instance=instance))
    assert claimed is not None and claimed.record.placement is not None
    assert claimed.record.placement.k8s_job is None
    settings = Settings(namespace=site.namespace, runner_image="qforge-runner:test",
                        pvc_name=PVC_NAME, ttl_seconds_after_finished=2,
                        runner_cpu="10m", runner_memory="16Mi")
    manifest = build_job_manifest(job_id, claimed.record.spec, settings, attempt=1)
    with JobWatch(kube, site.namespace) as watch:
        site.cluster.apply(manifest, namespace=site.namespace)
        name = manifest["metadata"]["name"]
        # finished, and deleted by the TTL controller: only the finalizer holds it
        wait_until(lambda: site.kubectl_json("get", "job", name)["metadata"].get(
            "deletionTimestamp"), 90, f"the TTL controller to delete Job {name}")
        ctl = site.controller()
        record = site.wait_status(job_id, "COMPLETED", 90)
        wait_until(lambda: not site.k8s_jobs(job_id), 60, f"Job {name} to go")
    assert record["placement"]["k8s_job"] == name
    assert watch.names_by_job_id[job_id] == {name}  # never launched again
    assert f"Resuming job {job_id}" in ctl.log_text()


def test_a_lease_held_by_a_controller_pod_that_is_gone_is_taken_at_once(site: Site) -> None:
    """Held by pod "ghost" (no such pod), renewed just now, for an hour: the new
    controller does not wait the hour."""
    now = datetime.now(UTC).replace(microsecond=1).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    site.cluster.apply({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "qforge-controller", "namespace": site.namespace,
                     "annotations": {ANNOTATION_HOLDER_POD: "ghost",
                                     ANNOTATION_HOLDER_UID: "0000"}},
        "spec": {"holderIdentity": "ghost.1", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now, "leaseTransitions": 0}},
        namespace=site.namespace)
    ctl = site.controller(POD_NAME="qforge-new", POD_UID="1111")
    ctl.wait_leading(60)
    assert "held by pod ghost, which is gone" in ctl.log_text()
    (job_id,) = submit_direct(site, 1)
    site.wait_status(job_id, "COMPLETED", 60)
    lease = site.kubectl_json("get", "lease", "qforge-controller")
    assert lease["spec"]["holderIdentity"].startswith("qforge-new.")
    assert lease["metadata"]["annotations"][ANNOTATION_HOLDER_POD] == "qforge-new"
