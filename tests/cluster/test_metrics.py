"""A real controller on the real control plane: its /metrics agree with the store and
the cluster (after N jobs: counts, totals, histogram counts, runner pods by phase and by
why they wait, API requests by verb and code), every metric the dashboard queries is in
its scrape, and its JSON log parses line by line."""

from __future__ import annotations

import json

import pytest

from tests.cluster.helpers import Site
from tests.kube.procs import free_port
from tests.metrics import dashboard_exprs, names_in, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

SUCCEEDING = 3


def test_controller_metrics_agree_with_the_store_and_the_cluster(site: Site) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    ctl = site.controller(METRICS_PORT=str(port), METRICS_ADDRESS="127.0.0.1",
                          LOG_FORMAT="json", MAX_CONCURRENT_JOBS="4",
                          SUCCESS_EVENTS="true")  # Events posted, and counted
    ctl.wait_leading()
    done = site.submit_many(SUCCEEDING, "--task", "sp")
    stuck = site.submit("--cpu", "16")  # every kwok node has 4: Pending, Unschedulable
    site.wait_terminal(done, 120)
    site.wait_status(stuck, "RUNNING", 60)

    def settled() -> bool:
        m = scrape(url)
        return (m.total("qforge_jobs_finished_total") == SUCCEEDING
                and m.total("qforge_runner_pods_waiting", reason="Unschedulable") == 1
                and m.value("qforge_runner_pods", phase="Succeeded") == SUCCEEDING)

    wait_until(settled, 60, "the metrics to show the finished jobs and the stuck pod")
    m = scrape(url)
    assert m.value("qforge_controller_leader") == 1
    info = [labels for name, labels in m.samples if name == "qforge_build_info"]
    assert ("component", "controller") in info[0]
    # the store
    wait_until(lambda: scrape(url).value("qforge_jobs", status="completed") == SUCCEEDING,
               30, "the store's counts to catch up")
    m = scrape(url)
    assert m.value("qforge_jobs", status="queued") == 0
    assert m.value("qforge_jobs", status="running") == 1
    assert m.value("qforge_jobs_submitted_total") == SUCCEEDING + 1
    # what this controller did
    assert m.value("qforge_jobs_started_total") == SUCCEEDING + 1
    assert m.value("qforge_jobs_finished_total", status="completed", error_type="none") \
        == SUCCEEDING
    assert m.value("qforge_job_queue_wait_seconds_count") == SUCCEEDING + 1
    assert m.value("qforge_job_run_seconds_count") == SUCCEEDING
    assert m.value("qforge_xtb_wall_seconds_count") == SUCCEEDING
    walls = [site.record(j)["result"]["wall_time"] for j in done]
    assert m.value("qforge_xtb_wall_seconds_sum") == pytest.approx(sum(walls), abs=1e-6)
    assert m.value("qforge_active_jobs") == 1
    # the cluster: pods by phase and why the stuck one waits
    assert m.value("qforge_runner_pods", phase="Pending") == 1
    assert m.value("qforge_runner_pods", phase="Running") == 0
    pods = site.kubectl_json("get", "pods")["items"]
    assert sum(p["status"].get("phase") == "Succeeded" for p in pods) == SUCCEEDING
    # the API: one create per runner Job, the Lease renewed, the Jobs listed
    assert m.value("qforge_kubernetes_api_requests_total", verb="create", resource="jobs",
                   code="201") == SUCCEEDING + 1
    assert m.total("qforge_kubernetes_api_requests_total", resource="leases") >= 2
    assert m.value("qforge_kubernetes_api_requests_total", verb="list", resource="jobs",
                   code="200") >= 1
    posted = [e for e in site.kubectl_json("get", "events")["items"]
              if e.get("reportingComponent") == "qforge-controller"]
    assert posted
    assert m.value("qforge_kubernetes_api_requests_total", verb="create", resource="events",
                   code="201") == len(posted)
    assert m.total("qforge_launch_errors_total") == 0
    assert m.value("qforge_kubernetes_api_request_duration_seconds_count", verb="create",
                   resource="jobs") == SUCCEEDING + 1
    # every metric the dashboard queries exists in a real controller's scrape
    assert names_in(dashboard_exprs()) - m.names() == set()

    # a cancel: counted, and the runner pod leaves the gauges when it is deleted
    site.qforge("cancel", stuck)
    site.wait_status(stuck, "CANCELLED", 60)
    wait_until(lambda: scrape(url).value("qforge_runner_pods", phase="Pending") == 0, 60,
               "the cancelled job's pod to leave the gauges")
    m = scrape(url)
    assert m.value("qforge_jobs_finished_total", status="cancelled",
                   error_type="cancelled") == 1
    assert m.value("qforge_jobs", status="running") == 0
    assert m.total("qforge_runner_pods_waiting") == 0

    # the JSON log: one object per line, the controller speaking
    lines = ctl.log_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert {e["component"] for e in entries} == {"controller"}
    messages = [e["message"] for e in entries]
    assert "Starting Controller..." in messages and "Starting Worker..." not in messages
    assert any(m.startswith("Controller listening for jobs every") for m in messages)
    launched = [e for e in entries if e["message"] == f"Starting execution for job {done[0]}"]
    assert launched and launched[0]["job_id"] == done[0]
    assert "qforge.k8s.operator" in {e["logger"] for e in entries}
