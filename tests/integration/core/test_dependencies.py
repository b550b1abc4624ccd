"""Follow-up steps with the real local worker and real xtb: opt, then a Hessian on the
best geometry; and dependencies under fire (a parent failed, cancelled, a worker
SIGKILLed between parent and child)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from qforge.record import JobRecord, Status
from qforge.service.followups import make_follow_ups
from qforge.service.models import Submitted
from qforge.store.jobstore import JobStore, load_report
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec, Task
from tests.molecules import AMMONIA, CAFFEINE, ETHANE, WATER_EXPERIMENTAL
from tests.waiting import wait_until

from .conftest import qforge

Start = Callable[..., subprocess.Popen[str]]


def scaled(xyz: str, factor: float) -> str:
    """Another starting geometry of the same molecule (bonds stretched by `factor`)."""
    lines = xyz.splitlines()
    atoms = []
    for line in lines[2:]:
        sym, *xyz3 = line.split()
        atoms.append(f"{sym} " + " ".join(f"{float(c) * factor:.6f}" for c in xyz3))
    return "\n".join([lines[0], lines[1], *atoms]) + "\n"


def starts(log: Path) -> Counter[str]:
    return Counter(line.rsplit(" ", 1)[1] for line in log.read_text().splitlines()
                   if "Starting execution for job " in line)


def status(jobs: Path, job_id: str) -> str:
    return json.loads((jobs / job_id / "metadata.json").read_text())["status"]


def energy(record: JobRecord) -> float:
    assert record.result is not None, record.job_id
    return record.result.energy


def test_then_hess_best_runs_one_hessian_per_molecule_on_the_best_geometry(
        jobs: Path, start_worker: Start) -> None:
    store = JobStore(jobs)
    conformers = {"water": [scaled(WATER_EXPERIMENTAL, f) for f in (0.97, 1.0, 1.06)],
                  "ammonia": [scaled(AMMONIA, f) for f in (0.96, 1.05)]}
    parents = []
    for key, texts in conformers.items():
        items = [(JobSpec(molecule=parse_xyz(t), task=Task.opt, name=key), t) for t in texts]
        for sub in store.submit_batch(items, group="ens", owner="alice"):
            record = sub.record.evolve(molecule=key)  # as --conformers sets it
            store.write(record)
            parents.append(record)
    ups = make_follow_ups(
        store, [Submitted(job_id=p.job_id, name=p.spec.name, status=p.status) for p in parents],
        task=Task.hess, method=None, per="best", group="ens", owner="alice")
    assert len(ups) == 2
    shown = qforge("show", ups[0].job_id, jobs=jobs)
    assert "waiting for jobs" in shown.stdout, shown.stdout
    assert "1 waiting for other jobs" not in qforge("status", jobs=jobs).stdout
    assert "(2 waiting for other jobs)" in qforge("status", jobs=jobs).stdout
    worker = start_worker("--until-idle", "--poll-interval", "0.2")
    assert worker.wait(timeout=600) == 0
    hessians = [store.read(u.job_id) for u in ups]
    for hess, key in zip(hessians, conformers, strict=True):
        assert hess.status is Status.COMPLETED, hess.error
        assert hess.spec.task is Task.hess and hess.molecule == key
        mine = [store.read(p) for p in hess.depends_on]
        assert len(mine) == len(conformers[key])
        # the lowest energy (xtb prints 8 decimals: a tie goes to the smaller job id)
        best = min(mine, key=lambda r: (energy(r), r.job_id))
        report = load_report(jobs / best.job_id)
        assert report is not None and report.result is not None
        assert report.result.geometry is not None
        assert hess.spec.molecule.geometry == report.result.geometry.geometry
        written = parse_xyz((jobs / hess.job_id / "input.xyz").read_text()).geometry
        assert [c for xyz in written for c in xyz] == pytest.approx(
            [c for xyz in report.result.geometry.geometry for c in xyz], abs=1e-6)
        # the same geometry and method: the Hessian's energy is the optimised one's
        assert energy(hess) == pytest.approx(energy(best), abs=1e-6)
        assert hess.result is not None and hess.result.thermochemistry is not None
    all_jobs = [store.read(j) for j in store.job_ids()]
    assert Counter(r.spec.task for r in all_jobs) == Counter({Task.opt: 5, Task.hess: 2})


def test_submit_then_hess_for_all_through_the_cli(jobs: Path, start_worker: Start,
                                                  tmp_path: Path) -> None:
    (tmp_path / "water.xyz").write_text(WATER_EXPERIMENTAL)
    (tmp_path / "ammonia.xyz").write_text(AMMONIA)
    out = qforge("submit", str(tmp_path / "water.xyz"), str(tmp_path / "ammonia.xyz"),
                 "--task", "opt", "--then", "hess", "--then-for", "all", "--group", "two",
                 jobs=jobs)
    assert out.returncode == 0, out.stderr
    assert "Then hess: 2 follow-up jobs of each job, waiting for their parents" in out.stdout
    start_worker("--poll-interval", "0.2")
    done = qforge("wait", "--group", "two", "--timeout", "300", jobs=jobs, timeout=330)
    assert done.returncode == 0, done.stdout + done.stderr
    store = JobStore(jobs)
    records = [store.read(j) for j in store.job_ids()]
    assert Counter(r.spec.task for r in records) == Counter({Task.opt: 2, Task.hess: 2})
    assert all(r.status is Status.COMPLETED for r in records)


def test_a_failed_parent_cancels_its_follow_up_with_the_reason(
        jobs: Path, start_worker: Start) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--timeout", "0.5", "--then", "sp",
                 "--json", stdin=CAFFEINE, jobs=jobs)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    parent, child = lines[0]["job_id"], lines[1]["job_id"]
    assert lines[1]["follow_up"] is True and lines[1]["status"] == "QUEUED"
    worker = start_worker("--until-idle", "--poll-interval", "0.2")
    assert worker.wait(timeout=300) == 0
    store = JobStore(jobs)
    assert store.read(parent).status is Status.FAILED
    record = store.read(child)
    assert record.status is Status.CANCELLED and record.error is not None
    assert record.error.type == "cancelled"
    assert record.error.message.startswith(
        f"not run: the job it depends on, {parent} FAILED (timeout: ")


def test_a_cancelled_parent_cancels_its_follow_up(jobs: Path, start_worker: Start) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--opt-level", "extreme", "--then",
                 "hess", "--json", stdin=CAFFEINE, jobs=jobs)
    parent, child = (json.loads(line)["job_id"] for line in out.stdout.splitlines())
    start_worker("--poll-interval", "0.2")
    wait_until(lambda: status(jobs, parent) == "RUNNING", 60, "the parent to start")
    assert qforge("cancel", parent, jobs=jobs).returncode == 0
    wait_until(lambda: status(jobs, child) == "CANCELLED", 60, "the follow-up to end")
    record = JobStore(jobs).read(child)
    assert record.error is not None and f"{parent} CANCELLED" in record.error.message
    assert record.started_at is None


def test_a_waiting_follow_up_is_cancelled_by_the_user(jobs: Path,
                                                     start_worker: Start) -> None:
    out = qforge("submit", "-", "--task", "ohess", "--opt-level", "extreme", "--then",
                 "hess", "--json", stdin=CAFFEINE, jobs=jobs)
    parent, child = (json.loads(line)["job_id"] for line in out.stdout.splitlines())
    start_worker("--poll-interval", "0.2")
    wait_until(lambda: status(jobs, parent) == "RUNNING", 60, "the parent to start")
    cancel = qforge("cancel", child, jobs=jobs)
    assert cancel.returncode == 0, cancel.stderr
    wait_until(lambda: status(jobs, child) == "CANCELLED", 60, "the follow-up to end")
    assert status(jobs, parent) == "RUNNING"  # the parent runs on
    assert qforge("cancel", parent, jobs=jobs).returncode == 0


@pytest.mark.parametrize("when", ["parent running", "parent completed"])
def test_a_worker_sigkilled_between_parent_and_child(jobs: Path, start_worker: Start,
                                                     tmp_path: Path, when: str) -> None:
    """Each job completes exactly once: the parent (again, if it was running), then the
    follow-up, from the parent's optimised geometry; none lost, none twice."""
    out = qforge("submit", "-", "--task", "opt", "--opt-level", "extreme", "--then",
                 "hess", "--json", stdin=ETHANE, jobs=jobs)
    parent, child = (json.loads(line)["job_id"] for line in out.stdout.splitlines())
    env = {"LEASE_SECONDS": "3", "MAX_CONCURRENT_JOBS": "1"}
    a = start_worker("--poll-interval", "0.2", log_name="a.log", env=env)
    target = "RUNNING" if when == "parent running" else "COMPLETED"
    wait_until(lambda: status(jobs, parent) == target, 120, f"the parent {target}",
               interval=0.02)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=30)
    b = start_worker("--until-idle", "--poll-interval", "0.2", log_name="b.log", env=env)
    assert b.wait(timeout=300) == 0
    store = JobStore(jobs)
    p, c = store.read(parent), store.read(child)
    assert p.status is Status.COMPLETED and c.status is Status.COMPLETED, (p.error, c.error)
    report = load_report(jobs / parent)
    assert report is not None and report.result is not None
    assert report.result.geometry is not None
    assert c.spec.molecule.geometry == report.result.geometry.geometry
    a_starts, b_starts = starts(tmp_path / "a.log"), starts(tmp_path / "b.log")
    # the follow-up ran once (twice only when the kill interrupted it: then it is
    # recorded as a second attempt, as for any job of a killed worker)
    assert b_starts[child] == 1 and c.attempts == 1 + a_starts[child]
    assert a_starts[parent] + b_starts[parent] == p.attempts
    assert store.waiting.ids() == [] and store.waiting.releasing_markers() == []
