"""The local worker and the CLI with real xtb, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from qforge.record import Status
from qforge.store.jobstore import JobStore
from tests.integration.runner.helpers import processes
from tests.molecules import CAFFEINE, WATER_EXPERIMENTAL
from tests.waiting import wait_until

from .conftest import qforge

Start = Callable[..., subprocess.Popen[str]]
WATER = WATER_EXPERIMENTAL  # these tests' water, as the benchmarks'


def xtb_children(parent: int) -> list[int]:
    """Pids of xtb processes whose parent is `parent`."""
    return [pid for pid, name, fields in processes() if name == "xtb" and int(fields[1]) == parent]


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def status(jobs: Path, job_id: str) -> str:
    return json.loads((jobs / job_id / "metadata.json").read_text())["status"]


def test_submit_wait_runs_water_to_completed_with_the_energy(jobs: Path,
                                                             start_worker: Start) -> None:
    start_worker("--poll-interval", "0.5")
    out = qforge("submit", "-", "--wait", stdin=WATER, jobs=jobs)
    assert out.returncode == 0, out.stderr
    assert "COMPLETED" in out.stdout and "QUEUED" in out.stderr
    job_id = out.stdout.split()[1]
    shown = json.loads(qforge("show", job_id, "--json", jobs=jobs).stdout)
    assert shown["status"] == "COMPLETED"
    assert shown["result"]["energy"] == pytest.approx(-5.0705444, abs=1e-5)
    assert shown["placement"]["worker_id"] == "worker_1"
    xyz = qforge("result", job_id, "--format", "xyz", jobs=jobs)
    assert xyz.returncode == 0 and xyz.stdout.startswith("3\n")
    qcs = json.loads(qforge("result", job_id, "--format", "qcschema", jobs=jobs).stdout)
    assert qcs["success"] is True
    listed = qforge("list", "--status", "completed", jobs=jobs)
    assert job_id in listed.stdout and "H2O" in listed.stdout


def test_worker_log_lines_keep_the_original_shape(jobs: Path, start_worker: Start,
                                                  tmp_path: Path) -> None:
    out = qforge("submit", "-", "--json", stdin=WATER, jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    w = start_worker("--until-idle", "--poll-interval", "0.5")
    assert w.wait(timeout=120) == 0
    log = (tmp_path / "worker.log").read_text()
    for needle in ("qforge.worker - INFO - Starting Worker...",
                   "Worker listening for jobs every 0.5s...",
                   "Found 1 queued jobs",
                   f"Starting execution for job {job_id}"):
        assert needle in log
    assert re.search(r"Health check: active_jobs=\d+, status=healthy, worker=worker_1", log)
    # --until-idle ends the process without the interpreter's teardown: only after the
    # last log line is flushed and the record is on disk
    assert log.rstrip().endswith("qforge.worker - INFO - Worker stopped")
    assert status(jobs, job_id) == "COMPLETED"


@pytest.mark.parametrize(("stdin", "args", "needle"), [
    ("3\nx\nO 0 0 0\nH 0 0 1\n", [], "atom"),
    ("1\nx\nXx 0 0 0\n", [], "Xx"),
    ("1\nx\nO 0 0 nan\n", [], "coordinate"),
    (WATER, ["--charge", "1"], "uhf"),
    (WATER, ["--solvent", "lava"], "lava"),
    (WATER, ["--method", "gfn9"], "gfn9"),
    (WATER, ["--timeout", "-5"], "timeout"),
    ("", [], ""),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
        jobs: Path, stdin: str, args: list[str], needle: str) -> None:
    out = qforge("submit", "-", *args, stdin=stdin, jobs=jobs)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert needle.lower() in out.stderr.lower()
    assert not jobs.exists() or [p for p in jobs.iterdir() if p.name != ".qforge"] == []


def test_missing_job_exits_3_and_missing_file_exits_2(jobs: Path) -> None:
    assert qforge("show", "no_such_job", jobs=jobs).returncode == 3
    assert qforge("cancel", "no_such_job", jobs=jobs).returncode == 3
    bad_id = qforge("result", "../x", jobs=jobs)  # not a job id at all: bad input, as delete
    assert bad_id.returncode == 2 and "job id '../x' is not valid" in bad_id.stderr
    missing = qforge("submit", "/nonexistent.xyz", jobs=jobs)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_show_explains_why_a_job_waits(jobs: Path) -> None:
    # --force: the same molecule twice is otherwise one job (deduplication)
    ids = [json.loads(qforge("submit", "-", "--json", "--force", stdin=WATER,
                             jobs=jobs).stdout)["job_id"] for _ in range(2)]
    shown = qforge("show", ids[1], jobs=jobs).stdout
    assert "queue position 2 of 2" in shown
    assert "start one with `qforge worker`" in shown


def test_timeout_kills_xtb_and_fails_the_job(jobs: Path, start_worker: Start) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--timeout", "1", "--json",
                 stdin=CAFFEINE, jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    w = start_worker("--until-idle", "--poll-interval", "0.5")
    assert w.wait(timeout=120) == 0
    rec = JobStore(jobs).read(job_id)
    assert rec.status is Status.FAILED
    assert rec.error is not None and rec.error.type == "timeout"


# Cholesterol (74 atoms): an `ohess` of it runs for minutes, so the cancel below always
# finds it running, however loaded the machine (caffeine's ~10 s could end, COMPLETED,
# before a cancel sent under a load of 13 got to it). Cancelled, it costs seconds.
CHOLESTEROL = "CC(C)CCCC(C)C1CCC2C1(CCC3C2CC=C4C3(CCC(C4)O)C)C cholesterol\n"


def test_cancel_stops_a_running_job(jobs: Path, start_worker: Start) -> None:
    out = qforge("submit", "-", "--format", "smi", "--task", "ohess", "--json",
                 stdin=CHOLESTEROL, jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    start_worker("--poll-interval", "0.5")
    wait_until(lambda: status(jobs, job_id) == "RUNNING", 60, "the job to start")
    assert qforge("cancel", job_id, jobs=jobs).returncode == 0
    wait_until(lambda: status(jobs, job_id) != "RUNNING", 120, "the job to be cancelled")
    assert status(jobs, job_id) == "CANCELLED"
    assert qforge("result", job_id, jobs=jobs).returncode == 1


def test_sigterm_stops_cleanly_and_requeues(jobs: Path, start_worker: Start) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--opt-level", "extreme", "--json",
                 stdin=CAFFEINE, jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    w = start_worker("--poll-interval", "0.5")
    wait_until(lambda: status(jobs, job_id) == "RUNNING", 60, "the job to start")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=60) == 0
    assert status(jobs, job_id) == "QUEUED"
    assert list((jobs / ".qforge" / "workers").iterdir()) == []


def test_two_workers_fifty_jobs_each_run_exactly_once(jobs: Path, start_worker: Start,
                                                      tmp_path: Path) -> None:
    ids = [json.loads(qforge("submit", "-", "--task", "sp", "--json", "--force", stdin=WATER,
                             jobs=jobs).stdout)["job_id"] for _ in range(50)]
    a = start_worker("--until-idle", "--poll-interval", "0.2", "--worker-id", "wa",
                     log_name="a.log")
    b = start_worker("--until-idle", "--poll-interval", "0.2", "--worker-id", "wb",
                     log_name="b.log")
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    starts: Counter[str] = Counter()
    for name in ("a.log", "b.log"):
        for line in (tmp_path / name).read_text().splitlines():
            if "Starting execution for job " in line:
                starts[line.rsplit(" ", 1)[1]] += 1
    assert starts == Counter({j: 1 for j in ids})
    store = JobStore(jobs)
    records = [store.read(j) for j in ids]
    assert all(r.status is Status.COMPLETED and r.attempts == 1 for r in records)
    assert {r.placement.worker_id for r in records if r.placement} == {"wa", "wb"}


def test_sigkilled_worker_jobs_are_recovered_by_another(jobs: Path, start_worker: Start
                                                         ) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--json", stdin=CAFFEINE, jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    env = {"LEASE_SECONDS": "3"}
    a = start_worker("--poll-interval", "0.5", log_name="a.log", env=env)
    wait_until(lambda: status(jobs, job_id) == "RUNNING", 60, "the job to start")
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=30)
    b = start_worker("--until-idle", "--poll-interval", "0.5", log_name="b.log", env=env)
    assert b.wait(timeout=300) == 0
    rec = JobStore(jobs).read(job_id)
    assert rec.status is Status.COMPLETED
    assert rec.attempts == 2


def caffeine_dimer() -> str:
    atoms = [line for line in CAFFEINE.splitlines()[2:] if line.strip()]
    moved = []
    for line in atoms:
        sym, x, y, z = line.split()
        moved.append(f"{sym} {x} {y} {float(z) + 7.0:.4f}")
    return f"{2 * len(atoms)}\ndimer\n" + "\n".join(atoms + moved) + "\n"


def test_xtb_dies_with_a_sigkilled_worker(jobs: Path, start_worker: Start) -> None:
    # A calculation that runs for minutes: an orphan would outlive the bounded wait.
    out = qforge("submit", "-", "--task", "ohess", "--json", stdin=caffeine_dimer(), jobs=jobs)
    job_id = json.loads(out.stdout)["job_id"]
    a = start_worker("--poll-interval", "0.5")
    wait_until(lambda: status(jobs, job_id) == "RUNNING", 60, "the job to start")
    wait_until(lambda: bool(xtb_children(a.pid)), 30, "xtb to start")
    orphans = xtb_children(a.pid)
    try:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        # The kernel kills xtb with its worker (parent-death signal): no orphan runs on.
        wait_until(lambda: not any(alive(p) for p in orphans), 30, "the orphaned xtb to die")
    finally:
        for pid in orphans:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
