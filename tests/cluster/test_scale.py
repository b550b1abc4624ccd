"""The controller at cluster scale on the real control plane (kwok plays the pods).

The witnesses are the API server's own: an independent watch on the Jobs (never more
than the cap unfinished, exactly one Job per job), kube-apiserver's
apiserver_request_total (no LIST of Jobs while the queue drains), and its
priority-and-fairness rejections (429s, answered by backing off, losing nothing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from qforge.k8s import naming
from tests.cluster.helpers import ROOT, RUN_FOR, JobWatch, Site, submit_direct
from tests.kube import ControlPlane
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

# Small requests so that hundreds of fake runner pods fit on the two kwok nodes.
SMALL = {"RUNNER_CPU": "10m", "RUNNER_MEMORY": "16Mi"}


def requests_total(cluster: ControlPlane, verb: str, resource: str) -> int:
    """kube-apiserver's apiserver_request_total for one verb and resource (all codes,
    scopes and clients)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and f'verb="{verb}"' in line \
                and f'resource="{resource}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def no_namespace_terminating(cluster: ControlPlane) -> bool:
    """Earlier tests' namespaces are gone (their deletion lists every kind of object)."""
    items = cluster.kubectl_json("get", "namespaces")["items"]
    return not [n for n in items if n.get("status", {}).get("phase") == "Terminating"]


def one_job_each(watch: JobWatch, job_ids: list[str]) -> dict[str, int]:
    return {j: n for j in job_ids if (n := len(watch.names_by_job_id.get(j, ()))) != 1}


def test_a_thousand_jobs_at_cap_200_no_list_while_the_queue_drains(site: Site,
                                                                    kube: Any) -> None:
    cap, count = 200, 1000
    job_ids = submit_direct(site, count)
    wait_until(lambda: no_namespace_terminating(site.cluster), 120,
               "earlier tests' namespaces to be gone")
    with JobWatch(kube, site.namespace) as watch:
        # pods live 4 s: at 50+ launches/s the cap is reached and held
        ctl = site.controller({RUN_FOR: "4s"}, MAX_CONCURRENT_JOBS=str(cap),
                              KUBE_RESYNC_SECONDS="900", JOB_KEEP_SECONDS="1", **SMALL)
        # the first Job is behind the controller's start-up LIST
        wait_until(lambda: watch.seen() >= 1, 120, "the first Job")
        lists_before = requests_total(site.cluster, "LIST", "jobs")
        states = site.wait_terminal(job_ids, 900)
        lists_after = requests_total(site.cluster, "LIST", "jobs")
        # every outcome recorded, then every Job deleted by the controller (one delete
        # per job, JOB_KEEP_SECONDS after its outcome is in the store)
        wait_until(lambda: not site.k8s_jobs(), 120, "every Job deleted")
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, {s for s in states.values()}
    print(f"cap {cap}: max unfinished {watch.max_unfinished}, until counted "
          f"{watch.max_unfinished_until_counted}")
    assert watch.max_unfinished == cap  # reached, never exceeded
    assert one_job_each(watch, job_ids) == {}
    assert watch.seen() == count
    assert lists_after - lists_before == 0
    ctl.stop(timeout=90)  # a clean stop logs the controller's request counts
    requests = json.loads(re.findall(r"Kubernetes API requests made: (\{.*\})",
                                     ctl.log_text())[-1])
    # the API budget, the bare loop's: one create and one delete per job; no Event on
    # a success, no finalizer to patch, no LIST of pods per job
    assert requests["create jobs"] == count
    assert count <= requests["delete jobs"] <= count * 1.1  # (a delete tried again)
    assert requests.get("create events", 0) == 0 and requests.get("patch jobs", 0) == 0
    assert requests.get("list pods", 0) == 0


# ------------------------------------------------------------------ 429s


def _flow_control(site: Site, sa: str) -> tuple[str, str]:
    """A priority level with about one seat, that rejects (429) rather than queues, and
    a flow schema sending every request of `sa` to it (ahead of the defaults)."""
    level = f"{site.namespace}-tiny"
    site.cluster.apply([
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1",
         "kind": "PriorityLevelConfiguration", "metadata": {"name": level},
         "spec": {"type": "Limited", "limited": {
             "nominalConcurrencyShares": 1, "lendablePercent": 0,
             "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}}}},
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
         "metadata": {"name": level},
         "spec": {"priorityLevelConfiguration": {"name": level},
                  "matchingPrecedence": 500,
                  "distinguisherMethod": {"type": "ByUser"},
                  "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                      "name": sa, "namespace": site.namespace}}],
                      "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                         "resources": ["*"], "namespaces": ["*"],
                                         "clusterScope": True}],
                      "nonResourceRules": [{"verbs": ["*"],
                                            "nonResourceURLs": ["*"]}]}]}},
    ])
    return level, level


def _rejected(cluster: ControlPlane, flow_schema: str) -> int:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("apiserver_flowcontrol_rejected_requests_total{")
                   and f'flow_schema="{flow_schema}"' in line))


def _sa_kubeconfig(site: Site, sa: str, path: Path) -> Path:
    token = site.kubectl("create", "token", sa, "--duration=1h").stdout.strip()
    admin = json.loads(site.cluster.kubeconfig.read_text())
    admin["users"] = [{"name": sa, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = sa
    path.write_text(json.dumps(admin))
    return path


def test_429s_from_the_api_server_lose_no_job_and_launch_none_twice(
        site: Site, kube: Any, tmp_path: Path) -> None:
    # the chart's own service account and Role (the controller's real rights)
    rendered = site.cluster.helm(
        "template", "qforge", str(ROOT / "charts" / "qforge"), "-n", site.namespace,
        "--kube-version", "1.34.0", "--set", "persistence.existingClaim=qforge-jobs",
        "-s", "templates/serviceaccount.yaml", "-s", "templates/role.yaml",
        "-s", "templates/rolebinding.yaml").stdout
    site.cluster.apply(rendered, namespace=site.namespace)
    sa = "qforge"
    schema, _ = _flow_control(site, sa)
    kubeconfig = _sa_kubeconfig(site, sa, tmp_path / "sa.kubeconfig")
    try:
        job_ids = submit_direct(site, 150)
        with JobWatch(kube, site.namespace) as watch:
            ctl = site.controller(MAX_CONCURRENT_JOBS="60", KUBECONFIG=str(kubeconfig),
                                  KUBE_API_WRITERS="16", **SMALL)
            states = site.wait_terminal(job_ids, 600)
        rejected = _rejected(site.cluster, schema)
    finally:
        site.cluster.kubectl("delete", "flowschema,prioritylevelconfiguration", schema,
                             check=False)
    assert watch.error is None, watch.error
    assert set(states.values()) == {"COMPLETED"}, {s for s in states.values()}
    assert one_job_each(watch, job_ids) == {}
    assert watch.max_unfinished <= 60
    assert rejected > 0  # the API server really said 429
    log = ctl.log_text()
    assert "429" in log and "back in the queue" in log
    assert "Traceback" not in log


# ---------------------------------------------------------------- helpers used above


def test_release_finalizers_frees_a_namespace_a_stopped_controller_left(site: Site) -> None:
    """Teardown aid of every cluster test (Site.delete) works on the real API."""
    name = "qf-left-behind"
    site.cluster.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": name, "namespace": site.namespace, "finalizers": [naming.FINALIZER],
        "labels": dict(naming.RUNNER_SELECTOR)},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}})
    assert site.release_finalizers() == 1
    assert site.kubectl_json("get", "job", name)["metadata"].get("finalizers") is None
