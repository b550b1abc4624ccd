"""`qforge worker --metrics-port --log-format json` running real xtb: its /metrics agree
with the store, a real Prometheus scrapes it and evaluates qforge's alert rules and the
dashboard's queries, and its JSON log parses line by line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qforge.metrics.kubernetes import NAMES as CONTROLLER_ONLY
from qforge.record import Status
from qforge.store.jobstore import JobStore
from tests.integration.chart.test_chart import _find_helm, render
from tests.metrics import dashboard_exprs, grafana_to_promql, names_in, scrape
from tests.molecules import CAFFEINE, METHANE, WATER_EXPERIMENTAL
from tests.waiting import wait_until

from .conftest import qforge

MOLECULES = (WATER_EXPERIMENTAL, METHANE, CAFFEINE)


@dataclass
class Run:
    jobs: Path
    url: str
    port: int
    log: Path
    ids: dict[str, str]
    worker: subprocess.Popen[str]


def submit(jobs: Path, text: str, *args: str) -> str:
    out = qforge("submit", "-", "--json", *args, stdin=text, jobs=jobs)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["job_id"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Four jobs: two complete, one times out, one is cancelled before it starts; then the
    worker idles with its /metrics endpoint up."""
    tmp = tmp_path_factory.mktemp("obs")
    jobs = tmp / "jobs"
    ids = {
        "water": submit(jobs, WATER_EXPERIMENTAL),
        "methane": submit(jobs, METHANE, "--task", "sp"),
        "timeout": submit(jobs, CAFFEINE, "--task", "ohess", "--timeout", "1"),
        # --force: the same water again would be deduplicated into the first job
        "cancelled": submit(jobs, WATER_EXPERIMENTAL, "--priority", "-5", "--force"),
    }
    assert qforge("cancel", ids["cancelled"], jobs=jobs).returncode == 0
    log = tmp / "worker.jsonl"
    with open(log, "w") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "qforge.cli.main", "worker", "--poll-interval", "0.5",
             "--max-concurrent", "2", "--metrics-port", "0", "--metrics-address",
             "127.0.0.1", "--log-format", "json"],
            env=dict(os.environ, JOBS_DIR=str(jobs)), stdout=sink, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
    try:
        found: list[int] = []

        def port_logged() -> bool:
            for line in log.read_text().splitlines():
                m = re.search(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
                if m:
                    found.append(int(m.group(1)))
                    return True
            return worker.poll() is not None

        wait_until(port_logged, 60, "the worker to log its metrics port")
        assert found, log.read_text()
        url = f"http://127.0.0.1:{found[0]}/metrics"
        store = JobStore(jobs)
        wait_until(lambda: all(store.read(i).status.terminal for i in ids.values()), 180,
                   "every job to end")
        # The counter follows the record by a moment (the record is written first).
        wait_until(lambda: scrape(url).total("qforge_jobs_finished_total") == 4, 30,
                   "the finished jobs to be counted")
        yield Run(jobs, url, found[0], log, ids, worker)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=30)


def test_worker_metrics_agree_with_the_store(run: Run) -> None:
    store = JobStore(run.jobs)
    records = {k: store.read(i) for k, i in run.ids.items()}
    assert records["water"].status is Status.COMPLETED
    assert records["methane"].status is Status.COMPLETED
    assert records["timeout"].status is Status.FAILED
    assert records["cancelled"].status is Status.CANCELLED
    # store gauges (the finished counts are refreshed off the scrape: a moment behind)
    wait_until(lambda: scrape(run.url).value("qforge_jobs", status="cancelled") == 1, 30,
               "the store's counts to catch up")
    m = scrape(run.url)
    counts = store.queries.counts()
    for status in Status:
        assert m.value("qforge_jobs", status=status.value.lower()) == counts[status]
    assert counts[Status.COMPLETED] == 2 and counts[Status.FAILED] == 1
    assert m.value("qforge_jobs", status="queued") == len(store.queue.queued()) == 0
    assert m.value("qforge_jobs_submitted_total") == 4
    assert m.value("qforge_store_up") == 1
    # this worker's counters
    assert m.value("qforge_jobs_started_total") == 3
    assert m.value("qforge_jobs_finished_total", status="completed", error_type="none") == 2
    assert m.value("qforge_jobs_finished_total", status="failed", error_type="timeout") == 1
    assert m.value("qforge_jobs_finished_total", status="cancelled",
                   error_type="cancelled") == 1
    assert m.value("qforge_jobs_finished_total", status="failed", error_type="xtb_error") == 0
    # histograms: one observation per job that waited, ran, or ran xtb to the end
    assert m.value("qforge_job_queue_wait_seconds_count") == 3
    assert m.value("qforge_job_run_seconds_count") == 3
    assert m.value("qforge_xtb_wall_seconds_count") == 2
    walls = [records[k].result.wall_time for k in ("water", "methane")]  # type: ignore[union-attr]
    assert m.value("qforge_xtb_wall_seconds_sum") == pytest.approx(sum(walls), abs=1e-6)
    assert m.value("qforge_xtb_wall_seconds_bucket", le="+Inf") == 2
    assert m.value("qforge_scheduling_pass_duration_seconds_count") >= 3
    assert m.value("qforge_scheduling_last_pass_timestamp_seconds") > time.time() - 60
    assert m.value("qforge_active_jobs") == 0
    assert m.value("qforge_max_concurrent_jobs") == 2
    info = [k for k in m.samples if k[0] == "qforge_build_info"]
    assert info and ("component", "worker") in info[0][1]
    # nothing of the controller's own on a worker
    assert not {f.name for f in m.families} & CONTROLLER_ONLY


def test_every_metric_the_dashboard_queries_exists(run: Run) -> None:
    used = names_in(dashboard_exprs())
    assert len(used) >= 12
    missing = used - scrape(run.url).names()
    # The controller's own metrics are checked against a real controller (tests/cluster).
    assert {n for n in missing if n.removesuffix("_total").removesuffix("_bucket")
            not in CONTROLLER_ONLY} == set()


def test_json_logs_parse_line_by_line_and_keep_the_original_lines(run: Run) -> None:
    lines = run.log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(entries) > 10
    for e in entries:
        assert {"time", "level", "component", "logger", "message"} <= set(e), e
        assert e["component"] == "worker"
    messages = [e["message"] for e in entries]
    assert "Starting Worker..." in messages
    assert any(re.fullmatch(r"Found \d+ queued jobs", m) for m in messages)
    assert any(re.fullmatch(r"Health check: active_jobs=\d+, status=healthy, "
                            r"worker=worker_1", m) for m in messages)
    start = [e for e in entries
             if e["message"] == f"Starting execution for job {run.ids['water']}"]
    assert start and start[0]["job_id"] == run.ids["water"]
    assert start[0]["logger"] == "qforge.scheduling.core"
    assert {e["logger"] for e in entries} >= {"qforge.worker", "qforge.scheduling.core"}
    # no molecule in the log: not one atom line of what was submitted
    text = run.log.read_text()
    for molecule in MOLECULES:
        for atom in molecule.splitlines()[2:]:
            assert atom.strip() not in text


# --- a real Prometheus --------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qforge's alert rules as the chart renders them (spec.groups of its PrometheusRule)."""
    helm = _find_helm()
    if helm is None:
        pytest.skip("helm is not installed (build it with `make helm`)")
    docs = render(helm, "--set", "metrics.prometheusRule.enabled=true")
    rule = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rule) == 1
    path = tmp_path_factory.mktemp("rules") / "qforge-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule[0]["spec"]["groups"]}))
    return path


@pytest.fixture(scope="module")
def prometheus(run: Run, rules: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (make installs it)")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "qforge-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{run.port}"]}]}],
    }))
    port = _free_port()
    with open(tmp / "prometheus.log", "w") as sink:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_a_real_prometheus_scrapes_the_worker_and_evaluates_the_rules(
        run: Run, prometheus: str) -> None:
    answers: list[Any] = []

    def completed_counted() -> bool:
        try:
            data = _api(prometheus, "/api/v1/query",
                        query='sum(qforge_jobs_finished_total{status="completed"})')
        except OSError:
            return False
        answers[:] = data["data"]["result"]
        return bool(answers)

    wait_until(completed_counted, 60, "Prometheus to answer a query of a qforge metric")
    assert float(answers[0]["value"][1]) == 2
    groups: list[Any] = []

    def rules_evaluated() -> bool:
        groups[:] = _api(prometheus, "/api/v1/rules")["data"]["groups"]
        return bool(groups) and all(r.get("lastEvaluation", "").startswith("20")
                                    and not r["lastEvaluation"].startswith("0001")
                                    for g in groups for r in g["rules"])

    wait_until(rules_evaluated, 60, "Prometheus to evaluate qforge's rules")
    evaluated = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(evaluated) == {"QforgeQueueStalled", "QforgePollerStalled",
                              "QforgeFailureRateHigh", "QforgeRunnersWaiting"}
    for name, rule in evaluated.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    # the worker passes every half second: its poller is not stalled
    assert evaluated["QforgePollerStalled"]["state"] == "inactive"


def test_every_dashboard_query_is_valid_promql_to_a_real_prometheus(
        run: Run, prometheus: str) -> None:
    wait_until(lambda: bool(_api(prometheus, "/api/v1/query",
                                 query="qforge_store_up")["data"]["result"]),
               60, "the first scrape")
    for expr in dashboard_exprs():
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        answer = _api(prometheus, "/api/v1/query", query=grafana_to_promql(expr))
        assert answer["status"] == "success", (expr, answer)


def test_a_busy_metrics_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = qforge("worker", "--until-idle", "--metrics-port", str(port),
                     "--metrics-address", "127.0.0.1", jobs=tmp_path / "jobs")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"qforge: error: METRICS_PORT: cannot listen on 127.0.0.1:{port}" in out.stderr
