"""qforge-runner JOB_DIR as a program: exit codes 0, 1, 2 and SIGTERM, with the real xtb."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType, RunReport
from qforge_runner.spec import JobSpec
from tests.integration.runner.helpers import group_gone, needs_xtb, wrapper
from tests.molecules import WATER, water_cluster
from tests.waiting import wait_until

pytestmark = needs_xtb


def _job(tmp_path: Path, spec: JobSpec | None, job_id: str = "water_20261128_133039_k3f9"
         ) -> Path:
    job = tmp_path / "jobs" / job_id
    job.mkdir(parents=True)
    if spec is not None:
        metadata = {"schema_version": 1, "job_id": job_id, "status": "RUNNING",
                    "spec": spec.model_dump(mode="json")}
        (job / "metadata.json").write_text(json.dumps(metadata))
    return job


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_TIMEOUT", "XTB_TIMEOUT")}
    env.update(QFORGE_SCRATCH=str(scratch), **extra)
    return env


def _runner(job: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qforge_runner.cli", str(job)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _report(job: Path) -> RunReport:
    return RunReport.model_validate_json((job / "result.json").read_text())


def test_success_exits_0(tmp_path: Path) -> None:
    job = _job(tmp_path, JobSpec(molecule=parse_xyz(WATER)))
    before = set(job.iterdir())
    proc = _runner(job, _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = _report(job)
    assert report.success and report.result is not None
    assert report.job_id == "water_20261128_133039_k3f9"
    assert abs(report.result.energy - -5.0705444) < 1e-6
    assert "xtb finished for job water_20261128_133039_k3f9" in proc.stderr
    assert "Traceback" not in proc.stderr
    # it wrote only into the job folder and the scratch root, which it left empty
    assert list((tmp_path / "scratch").iterdir()) == []
    assert {p.name for p in set(job.iterdir()) - before} >= {"result.json", "xtb.log"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs", "scratch"]


def test_a_runner_pod_names_its_node_and_pod_in_the_report(tmp_path: Path) -> None:
    """The runner Job's NODE_NAME and POD_NAME (the downward API) go into result.json:
    without a pod watch, that is how the controller learns where a job ran."""
    job = _job(tmp_path, JobSpec(molecule=parse_xyz(WATER)))
    proc = _runner(job, _env(tmp_path, NODE_NAME="node-7", POD_NAME="qf-water-1-abcde"))
    assert proc.returncode == 0, proc.stderr
    report = _report(job)
    assert report.success and (report.node, report.pod) == ("node-7", "qf-water-1-abcde")
    # outside a pod: nothing said
    other = _job(tmp_path, JobSpec(molecule=parse_xyz(WATER)), "water_20261128_133039_x2")
    env = {k: v for k, v in _env(tmp_path).items() if k not in ("NODE_NAME", "POD_NAME")}
    assert _runner(other, env).returncode == 0
    assert (_report(other).node, _report(other).pod) == (None, None)


def test_a_failed_calculation_exits_1_with_the_error_recorded(tmp_path: Path) -> None:
    job = _job(tmp_path, JobSpec(molecule=parse_xyz(water_cluster()), task="ohess"))
    proc = _runner(job, _env(tmp_path, XTB_TIMEOUT="1"))
    assert proc.returncode == 1, proc.stderr
    assert "failed (timeout)" in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
    report = _report(job)
    assert report.error is not None and report.error.type is ErrorType.timeout


def test_missing_metadata_exits_2_and_records_an_input_error(tmp_path: Path) -> None:
    job = _job(tmp_path, None)
    proc = _runner(job, _env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("metadata.json: not found")
    assert len(proc.stderr.strip().splitlines()) == 1
    report = _report(job)
    assert report.error is not None and report.error.type is ErrorType.input_error


def test_invalid_spec_exits_2(tmp_path: Path) -> None:
    job = _job(tmp_path, None)
    (job / "metadata.json").write_text(json.dumps(
        {"job_id": "x", "spec": {"molecule": WATER, "uhf": 1}}))
    proc = _runner(job, _env(tmp_path))
    assert proc.returncode == 2
    assert "an even count needs uhf=0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_stops_xtb_and_still_writes_the_result(tmp_path: Path) -> None:
    script, pid_file = wrapper(tmp_path)
    job = _job(tmp_path, JobSpec(molecule=parse_xyz(water_cluster()), task="ohess"))
    runner = subprocess.Popen(
        [sys.executable, "-m", "qforge_runner.cli", str(job)],
        env=_env(tmp_path, QFORGE_XTB=str(script)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "xtb to start")
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=30)
    assert runner.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    report = _report(job)
    assert report.error is not None and report.error.type is ErrorType.cancelled
    assert group_gone(int(pid_file.read_text()))
