"""The local executor on its one thread with real processes: several programs watched
at once through their pidfds, a deadline that stops a whole process group, a program
deaf to SIGTERM killed after the grace, a cancel; and the worker's threads: none per
job (beyond the few long-lived fsync threads of qforge_runner.atomic)."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from qforge.record import Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType
from qforge_runner.spec import JobSpec
from tests.integration.runner.helpers import living_members
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.waiting import wait_until

WAIT = 60.0  # seconds: the bound of every wait below


def fake_xtb(folder: Path, body: str) -> str:
    """A program standing in for xtb (the executor runs whatever it is given)."""
    path = folder / "fake-xtb"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def run_until_idle(store: JobStore, executor: LocalExecutor, settings: Settings) -> Scheduler:
    sched = Scheduler(store, executor, settings, instance="me", writes_after_pass=True)
    sched.start()
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,), kwargs={"until_idle": True})
    runner.start()
    runner.join(WAIT)
    stop.set()
    runner.join(WAIT)
    sched.shutdown()
    assert not runner.is_alive()
    return sched


def spec(**kw: object) -> JobSpec:
    return JobSpec(molecule=parse_xyz(WATER), **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


def test_many_programs_at_once_on_one_thread(store: JobStore, tmp_path: Path) -> None:
    """Twelve runs at cap 3 of a program that sleeps a moment: all end, never more than
    three at once, and the worker made no thread for them."""
    xtb = fake_xtb(tmp_path, f"date +%s.%N >> {tmp_path}/starts; sleep 0.2; "
                             f"date +%s.%N >> {tmp_path}/ends; exit 1")
    ids = [store.submit(spec(), input_text=WATER).job_id for _ in range(12)]
    settings = Settings.from_env({"POLL_INTERVAL": "0.5"}, jobs_dir=store.root,
                                 max_concurrent_jobs=3)
    executor = LocalExecutor(store, settings, xtb=xtb)
    most = [0]
    names: set[str] = set()
    launch = executor.launch

    def counting(claimed: object) -> None:
        launch(claimed)  # type: ignore[arg-type]
        most[0] = max(most[0], len(executor.holding()))
        names.update(t.name for t in threading.enumerate())

    executor.launch = counting  # type: ignore[method-assign]
    run_until_idle(store, executor, settings)
    assert most[0] == 3
    # no thread per job and no record writer: the scheduler's thread (and the few
    # long-lived fsync threads of qforge_runner.atomic, made once per process)
    assert not [n for n in names if n.startswith(("xtb", "record-writer"))], names
    assert len([n for n in names if not n.startswith("fsync")]) <= 2, names
    records = [store.read(j) for j in ids]
    assert all(r.status is Status.FAILED for r in records)  # not xtb: no energy
    assert all(r.error is not None and r.error.type is ErrorType.xtb_error for r in records)
    starts = sorted(float(t) for t in (tmp_path / "starts").read_text().split())
    ends = sorted(float(t) for t in (tmp_path / "ends").read_text().split())
    assert len(starts) == len(ends) == 12
    # at every start, at most two others were between their start and their end
    for t in starts:
        running = sum(1 for s, e in zip(starts, ends, strict=True) if s < t < e)
        assert running <= 2


def test_a_deadline_stops_the_whole_group_and_a_deaf_program_is_killed(
        store: JobStore, tmp_path: Path) -> None:
    xtb = fake_xtb(tmp_path, f"echo $$ > {tmp_path}/pgid; trap '' TERM; "
                             "sleep 300 & while :; do sleep 0.05; done")
    job = store.submit(spec(timeout=0.5), input_text=WATER).job_id
    settings = Settings.from_env({"POLL_INTERVAL": "0.5"}, jobs_dir=store.root)
    executor = LocalExecutor(store, settings, xtb=xtb, grace=0.3)
    run_until_idle(store, executor, settings)
    record = store.read(job)
    assert record.status is Status.FAILED and record.error is not None
    assert record.error.type is ErrorType.timeout
    pgid = int((tmp_path / "pgid").read_text())
    wait_until(lambda: not living_members(pgid), 10, "the group to die")


def test_a_cancel_request_stops_a_running_program(store: JobStore, tmp_path: Path) -> None:
    xtb = fake_xtb(tmp_path, f"touch {tmp_path}/started; exec sleep 300")
    job = store.submit(spec(), input_text=WATER).job_id
    settings = Settings.from_env({"POLL_INTERVAL": "0.5"}, jobs_dir=store.root)
    executor = LocalExecutor(store, settings, xtb=xtb)
    sched = Scheduler(store, executor, settings, instance="me", writes_after_pass=True)
    sched.start()
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,), kwargs={"until_idle": True})
    runner.start()
    try:
        wait_until((tmp_path / "started").exists, WAIT, "the program to start")
        store.cancels.request(job)
        runner.join(WAIT)
        assert not runner.is_alive()
    finally:
        stop.set()
        runner.join(WAIT)
        sched.shutdown()
    assert store.read(job).status is Status.CANCELLED
