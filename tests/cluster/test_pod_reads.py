"""A controller without its pod watch (KUBE_POD_WATCH=false) on the real control plane:
successes from the Jobs' own status, pods read only when needed (a job that waits, a
failure), with the API server's real label selectors and Job status (kwok plays the
pods)."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import EXIT_CODE, REASON, Site
from tests.kube.procs import free_port
from tests.metrics import scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

UNWATCHED = {"KUBE_POD_WATCH": "false"}


def test_without_the_pod_watch_jobs_complete_and_a_waiting_one_says_why(site: Site) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    site.controller(MAX_CONCURRENT_JOBS="3", METRICS_PORT=str(port),
                    METRICS_ADDRESS="127.0.0.1", **UNWATCHED)
    stuck = site.submit("--cpu", "16")  # every kwok node has 4
    done = [site.submit_succeeding() for _ in range(2)]
    for job_id in done:
        record = site.wait_status(job_id, "COMPLETED", 60)
        assert record["result"]["energy"] < 0
        assert record["placement"]["k8s_job"]

    def says_why() -> str | None:
        out = site.qforge("show", stuck).stdout
        return out if "Insufficient cpu" in out else None

    wait_until(says_why, 60, "`qforge show` to say why the job waits (its pod read)")
    assert site.status(stuck) == "RUNNING"
    assert "Insufficient cpu" in site.record(stuck)["waiting_reason"]
    # the pod read is what the runner-pods-waiting gauge (QforgeRunnersWaiting) counts;
    # no pods by phase without the watch
    wait_until(lambda: scrape(url).total("qforge_runner_pods_waiting",
                                         reason="Unschedulable") == 1,
               30, "the waiting pod in the metrics")
    assert "qforge_runner_pods" not in scrape(url).names()


def test_without_the_pod_watch_a_failure_reads_its_pod(site: Site) -> None:
    site.controller({EXIT_CODE: "137", REASON: "OOMKilled"}, **UNWATCHED)
    job_id = site.submit()
    record = site.wait_status(job_id, "FAILED", 60)
    assert record["error"]["type"] == "resource_error", record["error"]
    assert "OOMKilled" in record["error"]["message"]
