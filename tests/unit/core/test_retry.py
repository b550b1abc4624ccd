"""qforge retry: FAILED (and CANCELLED, when asked) jobs queued again as a new attempt of
the same job, the earlier one kept in the record's history and its files moved aside;
nothing else changes; an unknown id changes nothing."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from qforge.auth.roles import Denied, Identity, Role
from qforge.record import Attempt, JobRecord, Status
from qforge.service.manager import JobManager
from qforge.settings import Settings
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import JobStore
from qforge.store.records import serialize
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import JobError
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL

from .campaign_helpers import MOLECULES, finish, qf, spec


def campaign(store: JobStore) -> dict[str, str]:
    out = store.submit_batch([(spec(n), MOLECULES[n]) for n in MOLECULES], group="camp")
    return {s.record.spec.name or "": s.record.job_id for s in out}


def leave_result(store: JobStore, job_id: str) -> None:
    """What a runner leaves in the job folder: result.json and xtb's files."""
    folder = store.layout.job_dir(job_id)
    (folder / "result.json").write_text('{"success": false}\n')
    (folder / "xtb.log").write_text("the first attempt's output\n")


# ------------------------------------------------------------------ the model
def test_the_history_is_not_written_while_empty_and_round_trips_when_not(
        store: JobStore) -> None:
    record = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    assert "history" not in json.loads(serialize(record))
    assert record.attempt == 1
    attempt = Attempt(number=1, status=Status.FAILED, error=JobError(
        type="timeout", message="too slow"), change="twice the time: 20 s", by="ladder",
        rung="longer", claims=1)
    again = record.evolve(history=(attempt,), attempts=2)
    raw = serialize(again)
    assert json.loads(raw)["history"][0]["rung"] == "longer"
    assert serialize(JobRecord.model_validate_json(raw)) == raw
    assert again.attempt == 2 and again.claims_this_attempt == 1
    with pytest.raises(ValidationError):
        Attempt(number=1, status=Status.FAILED, change="x", by="me", surprise=1)
    with pytest.raises(ValidationError):
        attempt.number = 2  # type: ignore[misc]  # frozen


# --------------------------------------------------------------- by job id
def test_a_failed_job_runs_again_as_its_next_attempt(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = campaign(store)
    failed = finish(store, ids["methane"], Status.FAILED)
    leave_result(store, ids["methane"])
    before = store.queries.counts()

    assert qf(store, "retry", ids["methane"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Retried job {ids['methane']}: attempt 2 queued"]
    record = store.read(ids["methane"])
    assert record.status is Status.QUEUED and record.attempt == 2
    assert (record.started_at, record.finished_at, record.error, record.result) == (
        None, None, None, None)
    [first] = record.history
    assert (first.number, first.status, first.error, first.started_at, first.finished_at) == (
        1, Status.FAILED, failed.error, failed.started_at, failed.finished_at)
    assert first.files == "attempts/1" and first.rung is None and first.change
    # the failed attempt's files are kept aside: no reader takes them for the new one's
    folder = store.layout.job_dir(ids["methane"])
    assert not (folder / "result.json").exists() and not (folder / "xtb.log").exists()
    assert (folder / "attempts/1/result.json").exists()
    assert (folder / "attempts/1/xtb.log").read_text() == "the first attempt's output\n"
    after = store.queries.counts()
    assert after[Status.FAILED] == before[Status.FAILED] - 1
    assert after[Status.QUEUED] == before[Status.QUEUED] + 1
    assert ids["methane"] in [k.job_id for k in store.queue.queued()]
    # the index agrees with the records, as a rebuild from the folders finds it
    IndexKeeper(store).rebuild()
    assert store.queries.counts() == after
    # nothing else changed
    assert store.read(ids["water"]).status is Status.QUEUED
    assert store.groups.ids("camp") == sorted(ids.values())


def test_jobs_that_are_not_failed_are_skipped_with_the_reason(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = campaign(store)
    finish(store, ids["water"], Status.COMPLETED)
    finish(store, ids["methane"], Status.CANCELLED)
    assert qf(store, "retry", ids["water"], ids["methane"], ids["ammonia"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Skipped job {ids['water']}: COMPLETED: only FAILED and CANCELLED jobs are retried",
        f"Skipped job {ids['methane']}: CANCELLED (--include-cancelled retries it)",
        f"Skipped job {ids['ammonia']}: QUEUED: only FAILED and CANCELLED jobs are retried"]
    assert store.read(ids["water"]).status is Status.COMPLETED
    assert qf(store, "retry", "--include-cancelled", ids["methane"]) == 0
    assert store.read(ids["methane"]).status is Status.QUEUED
    assert store.read(ids["methane"]).history[0].status is Status.CANCELLED


def test_an_unknown_id_is_one_line_and_nothing_changes(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = campaign(store)
    finish(store, ids["methane"], Status.FAILED)
    assert qf(store, "retry", ids["methane"], "no-such-job") == 3
    out, err = capsys.readouterr()
    assert out == "" and err == "qforge: error: no such job: no-such-job\n"
    assert store.read(ids["methane"]).status is Status.FAILED
    assert qf(store, "retry", "Bad/Id") == 2
    assert qf(store, "retry") == 2  # neither ids nor a group
    assert qf(store, "retry", "--group", "nope") == 3


# ------------------------------------------------------------------ by group
def test_a_group_retry_reruns_exactly_its_failed_jobs(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = campaign(store)
    finish(store, ids["water"], Status.COMPLETED)
    finish(store, ids["methane"], Status.FAILED,
           error=JobError(type="timeout", message="too slow"))
    finish(store, ids["ammonia"], Status.FAILED)
    assert qf(store, "retry", "--group", "camp", "--error-type", "timeout") == 0
    assert capsys.readouterr().out.splitlines() == [
        "Retried 1 job(s) of group camp (1 skipped)",
        f"Skipped job {ids['ammonia']}: failed with xtb_error, not timeout"]
    assert [store.read(ids[n]).status for n in ("water", "methane", "ammonia")] == [
        Status.COMPLETED, Status.QUEUED, Status.FAILED]
    assert qf(store, "retry", "--group", "camp") == 0
    assert capsys.readouterr().out.splitlines() == ["Retried 1 job(s) of group camp"]
    assert store.read(ids["ammonia"]).status is Status.QUEUED
    assert store.read(ids["water"]).history == ()


def test_a_retried_job_fails_again_and_is_retried_again(store: JobStore) -> None:
    job = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    for attempt in (1, 2):
        finish(store, job.job_id, Status.FAILED)
        assert qf(store, "retry", job.job_id) == 0
        assert store.read(job.job_id).attempt == attempt + 1
    record = store.read(job.job_id)
    assert [a.number for a in record.history] == [1, 2]
    assert record.attempts == 2 and record.claims_this_attempt == 0


def test_a_retry_raced_by_another_sees_the_job_changed(store: JobStore) -> None:
    job = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    stale = finish(store, job.job_id, Status.FAILED)
    assert store.retries.again(stale, by="a", change="again") is not None
    assert store.retries.again(stale, by="b", change="again") is None  # it is QUEUED now
    assert len(store.read(job.job_id).history) == 1


# ------------------------------------------------------------------ owners
def test_a_submitter_retries_only_its_own_jobs(store: JobStore) -> None:
    ids = campaign(store)  # owned by "unknown"
    finish(store, ids["methane"], Status.FAILED)
    finish(store, ids["ammonia"], Status.FAILED)
    settings = Settings(jobs_dir=store.root)
    alice = JobManager(store, Identity(name="alice", role=Role.submitter), settings)
    with pytest.raises(Denied, match="may not retry job"):
        alice.retry([ids["methane"]], None)
    res = alice.retry([], "camp")
    assert res.retried == [] and {j for j, _ in res.skipped} == {ids["methane"], ids["ammonia"]}
    viewer = JobManager(store, Identity(name="v", role=Role.viewer), settings)
    with pytest.raises(Denied):
        viewer.retry([ids["methane"]], None)
    assert store.read(ids["methane"]).status is Status.FAILED
    admin = JobManager(store, Identity(name="root", role=Role.admin), settings)
    assert admin.retry([ids["methane"]], None).retried == [(ids["methane"], 2)]
    assert store.read(ids["methane"]).history[0].by == "root"


def test_show_lists_the_earlier_attempts(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    job = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    finish(store, job.job_id, Status.FAILED)
    settings = Settings(jobs_dir=store.root)
    JobManager(store, Identity(name="carol", role=Role.admin), settings).retry(
        [job.job_id], None)
    capsys.readouterr()
    assert qf(store, "show", job.job_id) == 0
    assert ("Attempt 1: FAILED (xtb_error); then run again as it was (carol)"
            in capsys.readouterr().out)


def test_the_new_spec_fields_are_written_only_when_set() -> None:
    plain = JobSpec(molecule=parse_xyz(WATER_EXPERIMENTAL))
    dumped = plain.model_dump(mode="json")
    for name in ("etemp", "scc_iterations", "preopt_gfnff", "start_geometry", "auto_retry"):
        assert name not in dumped
    changed = JobSpec(molecule=plain.molecule, etemp=3000.0, scc_iterations=8,
                      preopt_gfnff=True, start_geometry=plain.molecule, auto_retry=True)
    again = JobSpec.model_validate(changed.model_dump(mode="json"))
    assert again == changed
    args = changed.xtb_args()
    assert args[args.index("--etemp") + 1] == "3000"
    assert args[args.index("--iterations") + 1] == "8"
