"""Dependencies in the scheduling core: waiting jobs, their release from the best
parent's optimised geometry, their cancellation, and the index rebuilt from records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from qforge.cli.main import main
from qforge.record import JobRecord, Status
from qforge.scheduling.dependencies import Cancel, Release, Wait, decide
from qforge.scheduling.executor import Outcome
from qforge.service.followups import make_follow_ups, molecule_key, plan
from qforge.service.models import Submitted
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey
from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.result import ErrorType, JobError, JobResult, Quality, RunReport
from qforge_runner.spec import Task
from qforge_runner.timestamps import utcnow
from tests.molecules import METHANE

from .campaign_helpers import summary
from .conftest import WATER, water_spec
from .test_scheduler import make

# water, "optimised": a geometry a test can recognise in the follow-up's input
OPTIMISED = Molecule(symbols=("O", "H", "H"), geometry=(
    (0.0, 0.0, 0.1111), (0.0, 0.7777, -0.4444), (0.0, -0.7777, -0.4444)))


def finished(store: JobStore, job_id: str, energy: float,
             geometry: Molecule = OPTIMISED) -> Outcome:
    """The outcome of a successful optimisation, its result.json written as the runner
    would."""
    result = JobResult(
        energy=energy, gap=14.4, dipole=None, partial_charges=None, geometry=geometry,
        frequencies=None, converged=True, xtb_version="6.5.1", method="gfn2", task="opt",
        wall_time=0.1, quality=Quality(converged=True, gap_ok=True, ok=True))
    report = RunReport(success=True, result=result, error=None, job_id=job_id,
                       started_at=utcnow(), finished_at=utcnow())
    (store.layout.job_dir(job_id) / "result.json").write_text(report.model_dump_json())
    return Outcome(job_id, report=report)


def failed(job_id: str) -> Outcome:
    return Outcome(job_id, error=JobError(type=ErrorType.convergence_error,
                                          message="the SCC did not converge"))


def submitted(*records: JobRecord) -> list[Submitted]:
    return [Submitted(job_id=r.job_id, name=r.spec.name, status=r.status) for r in records]


def follow_up(store: JobStore, *parents: JobRecord, per: str = "all",
              task: Task = Task.hess) -> list[str]:
    subs = make_follow_ups(store, submitted(*parents), task=task, method=None,
                           per=per, group="g", owner="alice")  # type: ignore[arg-type]
    return [s.job_id for s in subs]


def opt_job(store: JobStore, molecule: str | None = None, **kw: object) -> JobRecord:
    record = store.submit(water_spec(task="opt", name="water", **kw), input_text=WATER,
                          group="g")
    if molecule is not None:  # as `--conformers` sets it: before any scheduler runs
        record = record.evolve(molecule=molecule)
        store.write(record)
    return record


def record_of(status: Status, energy: float | None = None, job_id: str = "p") -> JobRecord:
    now = utcnow()
    return JobRecord(job_id=job_id, status=status, created_at=now, updated_at=now,
                     created_ns=1, spec=water_spec(task="opt"),
                     result=None if energy is None else summary(energy),
                     error=None if status is not Status.FAILED else JobError(
                         type=ErrorType.convergence_error, message="no SCC"))


# ------------------------------------------------------------------ decisions
def test_decide_waits_while_a_parent_has_not_ended() -> None:
    parents = {"a": record_of(Status.COMPLETED, -5.0, "a"), "b": record_of(Status.RUNNING,
                                                                          job_id="b")}
    assert decide(parents) == Wait(("b",))


def test_decide_releases_from_the_lowest_energy_completed_parent() -> None:
    a, b = record_of(Status.COMPLETED, -5.0, "a"), record_of(Status.COMPLETED, -5.2, "b")
    c = record_of(Status.FAILED, job_id="c")
    decision = decide({"a": a, "b": b, "c": c})
    assert isinstance(decision, Release) and decision.parent.job_id == "b"


def test_decide_cancels_one_failed_parent_naming_it() -> None:
    decision = decide({"p": record_of(Status.FAILED)})
    assert isinstance(decision, Cancel)
    assert decision.message == ("not run: the job it depends on, p FAILED "
                                "(convergence_error: no SCC)")


def test_decide_cancels_when_no_parent_completed_or_one_is_gone() -> None:
    decision = decide({"a": record_of(Status.CANCELLED, job_id="a"), "b": None})
    assert isinstance(decision, Cancel)
    assert "none of the 2 jobs it depends on completed" in decision.message
    assert "a CANCELLED" in decision.message and "b no longer exists" in decision.message


def test_plan_best_is_one_follow_up_per_molecule_key() -> None:
    recs = [record_of(Status.QUEUED, job_id=i).model_copy(update={"molecule": m})
            for i, m in (("a", "m1"), ("b", "m1"), ("c", None), ("d", "m2"))]
    assert [[r.job_id for r in chunk] for chunk in plan(recs, "best")] == [
        ["a", "b"], ["c"], ["d"]]
    assert len(plan(recs, "all")) == 4
    assert molecule_key(recs[2]) == "c"


# ------------------------------------------------------------------ the pass
def test_a_waiting_job_is_not_queued_and_starts_from_the_parents_geometry(
        store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    record = store.read(child)
    assert record.status is Status.QUEUED and record.depends_on == (parent.job_id,)
    assert [k.job_id for k in store.queue.queued()] == [parent.job_id]
    assert store.queries.waiting() == 1 and store.queries.counts()[Status.QUEUED] == 2
    sched, ex, _ = make(store, cap=4)
    sched.run_once()
    assert ex.launched == [parent.job_id]  # free slots, but the child waits
    ex.finish(finished(store, parent.job_id, -5.07))
    sched.run_once()
    released = store.read(child)
    assert released.waiting_reason is None and released.spec.task is Task.hess
    assert released.spec.molecule.geometry == OPTIMISED.geometry
    assert parse_xyz((store.layout.job_dir(child) / "input.xyz").read_text()).geometry \
        == OPTIMISED.geometry
    sched.run_once()
    assert ex.launched == [parent.job_id, child]
    assert store.queries.waiting() == 0


def test_a_failed_parent_cancels_its_dependents_down_the_chain(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent, task=Task.opt)
    [grandchild] = follow_up(store, store.read(child), task=Task.hess)
    sched, ex, _ = make(store)
    sched.run_once()
    ex.finish(failed(parent.job_id))
    sched.run_once()
    sched.run_once()
    for job, parent_id in ((child, parent.job_id), (grandchild, child)):
        record = store.read(job)
        assert record.status is Status.CANCELLED and record.error is not None
        assert record.error.type == ErrorType.cancelled
        assert record.error.message.startswith(
            f"not run: the job it depends on, {parent_id} ")
    assert ex.launched == [parent.job_id]
    assert not os.listdir(store.waiting.waiting)


def test_a_cancelled_parent_cancels_its_dependent(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    store.cancels.request(parent.job_id)
    sched, ex, _ = make(store)
    sched.run_once()
    sched.run_once()
    assert store.read(parent.job_id).status is Status.CANCELLED
    record = store.read(child)
    assert record.status is Status.CANCELLED and record.error is not None
    assert f"{parent.job_id} CANCELLED (cancelled: cancelled by user" in record.error.message
    assert ex.launched == []


def test_cancel_of_a_waiting_job(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    store.cancels.request(child)
    sched, ex, _ = make(store)
    sched.run_once()
    record = store.read(child)
    assert record.status is Status.CANCELLED and record.error is not None
    assert record.error.message == "cancelled by user before it started"
    assert store.cancels.pending() == [] and store.queries.waiting() == 0
    ex.finish(finished(store, parent.job_id, -5.07))
    sched.run_once()
    sched.run_once()
    assert ex.launched == [parent.job_id]  # the cancelled child never runs


def test_a_follow_up_of_a_job_that_already_completed_is_released(store: JobStore) -> None:
    parent = opt_job(store)
    sched, ex, _ = make(store)
    sched.run_once()
    ex.finish(finished(store, parent.job_id, -5.07))
    sched.run_once()
    [child] = follow_up(store, store.read(parent.job_id))
    assert os.listdir(store.waiting.settle) == [parent.job_id]  # signalled by the submitter
    sched.run_once()
    sched.run_once()
    assert ex.launched == [parent.job_id, child]


def test_best_waits_for_every_conformer_and_survives_a_failed_one(store: JobStore) -> None:
    a, b, c = (opt_job(store, molecule="water-1", priority=p) for p in (3, 2, 1))
    other = opt_job(store, molecule="water-2", solvent="water")
    follows = follow_up(store, a, b, c, other, per="best")
    assert len(follows) == 2
    best = store.read(follows[0])
    assert best.depends_on == (a.job_id, b.job_id, c.job_id) and best.molecule == "water-1"
    sched, ex, _ = make(store, cap=4)
    sched.run_once()
    low = Molecule(symbols=("O", "H", "H"), geometry=(
        (0.0, 0.0, 0.2), (0.0, 0.75, -0.4), (0.0, -0.75, -0.4)))
    ex.finish(finished(store, a.job_id, -5.0))
    ex.finish(failed(b.job_id))
    sched.run_once()
    assert store.read(follows[0]).waiting_reason is not None  # c still runs
    ex.finish(finished(store, c.job_id, -5.1, low))
    ex.finish(failed(other.job_id))
    sched.run_once()
    released = store.read(follows[0])
    assert released.status is Status.RUNNING and released.waiting_reason is None
    assert released.spec.molecule.geometry == low.geometry  # the lowest-energy one
    assert follows[0] in ex.launched
    cancelled = store.read(follows[1])
    assert cancelled.status is Status.CANCELLED  # its only conformer failed


def test_a_follow_up_dedups_only_with_the_same_step_on_the_same_parents(
        store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    unrelated = store.submit_batch([(water_spec(task="hess", name="water-hess"), WATER)],
                                   group="g")
    assert unrelated[0].duplicate_of is None
    again = make_follow_ups(store, submitted(parent), task=Task.hess, method=None,
                            per="all", group="h", owner="alice")
    assert again[0].duplicate_of == child
    assert follow_up(store, parent, task=Task.sp) != [child]


# ------------------------------------------------------------------ restarts
def test_the_waiting_index_is_rebuilt_from_records(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    for name in ("waiting", "after"):
        shutil.rmtree(store.layout.index / name)
    sched, ex, _ = make(store)  # start-up: sync reads the jobs no index holds
    assert store.waiting.ids() == [child]
    assert os.listdir(store.waiting.after / parent.job_id) == [child]
    # a stray queue marker of a waiting job is refused by the claim, never run
    key = QueueKey.make(0, store.read(child).created_ns, child)
    (store.layout.queue / key.name).touch()
    sched.run_once()
    assert ex.launched == [parent.job_id]
    # a stale waiting marker (a hand edit) is dropped by a rebuild
    (store.waiting.waiting / "nobody").touch()
    IndexKeeper(store).rebuild()
    assert store.waiting.ids() == [child]
    ex.finish(finished(store, parent.job_id, -5.07))
    sched.run_once()
    sched.run_once()
    assert ex.launched == [parent.job_id, child]


def test_a_signal_lost_in_a_crash_is_made_again_at_start(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    sched, ex, _ = make(store)
    sched.run_once()
    ex.finish(finished(store, parent.job_id, -5.07))
    sched.run_once()  # records the outcome (the signal) and releases
    assert store.read(child).waiting_reason is None
    # the same again, the signal lost: a new child, its parent ended, no settle marker
    [late] = follow_up(store, store.read(parent.job_id), task=Task.sp)
    (store.waiting.settle / parent.job_id).unlink()
    sched2, ex2, _ = make(store, instance="other")
    sched2.run_once()
    sched2.run_once()
    assert store.read(late).waiting_reason is None and late in ex2.launched + ex.launched


def test_a_dead_instance_settling_a_job_is_taken_over(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    sched, ex, clock = make(store, lease_seconds=10)
    sched.run_once()
    ex.finish(finished(store, parent.job_id, -5.07))
    store.waiting.take(child, "dead.host.1")  # it died right after taking the child
    sched.run_once()
    assert store.read(child).waiting_reason is not None  # another holds it: not yet
    clock.now += 11
    sched.run_once()
    clock.now += 11
    sched.run_once()
    sched.run_once()
    assert store.read(child).waiting_reason is None
    assert ex.launched == [parent.job_id, child]
    assert store.waiting.releasing_markers() == []


def test_a_worker_until_idle_is_not_idle_while_a_dead_instance_holds_a_waiting_job(
        store: JobStore) -> None:
    """`qforge worker --until-idle` started after a worker died settling a follow-up
    (its parent COMPLETED, nothing queued or running) waits out the lease and releases
    it, rather than exiting with the follow-up stranded."""
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    sched, ex, clock = make(store, lease_seconds=10)
    sched.run_once()
    ex.finish(finished(store, parent.job_id, -5.07))
    store.waiting.take(child, "dead.host.1")
    report = sched.run_once()
    assert report.queued == 0 and report.running_anywhere == 0
    assert not sched.idle(report)  # the dead instance's releasing marker is work left
    clock.now += 11
    sched.run_once()
    clock.now += 11
    sched.run_once()
    report = sched.run_once()  # the released child launched
    assert store.read(child).waiting_reason is None and ex.launched[-1] == child
    ex.finish(finished(store, child, -5.08))
    report = sched.run_once()
    assert sched.idle(report)


def test_a_restarted_instance_settles_what_it_had_taken(store: JobStore) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    sched, ex, _ = make(store, instance="ctl")
    sched.run_once()
    ex.finish(failed(parent.job_id))
    sched.run_once()
    assert store.read(child).status is Status.CANCELLED
    # a second child, taken by "ctl" when it stopped; parent long ended
    [other] = follow_up(store, store.read(parent.job_id), task=Task.sp)
    store.waiting.take(other, "ctl")
    make(store, instance="ctl")  # the restart: settles it at start
    assert store.read(other).status is Status.CANCELLED


# ------------------------------------------------------------------ the submit door
def test_submit_then_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOGNAME", "chemist7")
    (tmp_path / "w.xyz").write_text(WATER)
    (tmp_path / "m.xyz").write_text(METHANE)
    jobs = str(tmp_path / "jobs")
    # the same water twice: one job, one follow-up (per molecule, by default)
    assert main(["--jobs-dir", jobs, "submit", str(tmp_path / "w.xyz"), str(tmp_path / "w.xyz"),
                 str(tmp_path / "m.xyz"), "--group", "g", "--then", "ohess",
                 "--then-method", "gfn1"]) == 0
    out = capsys.readouterr().out
    assert "Then ohess: 2 follow-up jobs of each molecule's lowest-energy job, waiting " \
        "for their parents" in out
    store = JobStore(tmp_path / "jobs")
    records = [store.read(j) for j in store.job_ids()]
    follow = [r for r in records if r.depends_on]
    assert len(records) == 4 and len(follow) == 2
    for r in follow:
        assert r.spec.task is Task.ohess and r.spec.method.value == "gfn1"
        assert r.owner == "chemist7" and r.group == "g" and r.status is Status.QUEUED
        assert r.spec.name is not None and r.spec.name.endswith("-ohess")
    # submitted again: the parents and the follow-ups are all in the store already
    assert main(["--jobs-dir", jobs, "submit", str(tmp_path / "w.xyz"), "--then", "ohess",
                 "--then-method", "gfn1", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[1]["follow_up"] is True and lines[1]["duplicate_of"] in {
        r.job_id for r in follow}
    assert len(store.job_ids()) == 4
    # status counts them, show says what they wait for
    assert main(["--jobs-dir", jobs, "status"]) == 0
    assert "(2 waiting for other jobs)" in capsys.readouterr().out
    assert main(["--jobs-dir", jobs, "show", follow[0].job_id]) == 0
    assert f"waiting for job {follow[0].depends_on[0]} (QUEUED) to finish" in \
        capsys.readouterr().out


def test_a_follow_up_step_the_molecules_cannot_run_is_refused_before_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "uf6.xyz").write_text(URANIUM_HEXAFLUORIDE)
    jobs = tmp_path / "jobs"
    code = main(["--jobs-dir", str(jobs), "submit", str(tmp_path / "uf6.xyz"), "--method",
                 "gfnff", "--task", "sp", "--then", "sp", "--then-method", "gfn2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "GFN2-xTB (--then-method) has no parameters for U" in err
    assert JobStore(jobs).job_ids() == []


def test_a_long_name_is_shortened_for_the_follow_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.xyz").write_text(WATER)
    jobs = tmp_path / "jobs"
    assert main(["--jobs-dir", str(jobs), "submit", str(tmp_path / "w.xyz"), "--name",
                 "x" * 63, "--then", "hess"]) == 0
    store = JobStore(jobs)
    [follow] = [store.read(j) for j in store.job_ids() if store.read(j).depends_on]
    assert follow.spec.name == "x" * 58 + "-hess"


URANIUM_HEXAFLUORIDE = """7
UF6
U   0.0  0.0  0.0
F   2.0  0.0  0.0
F  -2.0  0.0  0.0
F   0.0  2.0  0.0
F   0.0 -2.0  0.0
F   0.0  0.0  2.0
F   0.0  0.0 -2.0
"""


def test_a_store_error_while_settling_is_retried(store: JobStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    parent = opt_job(store)
    [child] = follow_up(store, parent)
    sched, ex, clock = make(store)
    sched.run_once()
    ex.finish(finished(store, parent.job_id, -5.07))
    real = store.repair.ensure_queued
    calls: list[str] = []

    def full_disk(record: JobRecord) -> bool:
        if record.job_id == child and not calls:
            calls.append(child)
            raise OSError(28, "No space left on device")
        return real(record)

    monkeypatch.setattr(store.repair, "ensure_queued", full_disk)
    with pytest.raises(OSError):  # run() counts it and tries again a poll interval later
        sched.run_once()
    assert calls == [child] and [m.job_id for m in store.waiting.releasing_markers()] == [child]
    clock.now += 2
    sched.run_once()
    sched.run_once()
    assert store.waiting.releasing_markers() == [] and child in ex.launched
