"""qforge list/status/wait/cancel/export on groups (the commands, in-process)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qforge.auth.roles import Identity, Role
from qforge.cli import campaign
from qforge.cli.main import build_parser, main
from qforge.record import Status
from qforge.service.export import COLUMNS, export_row
from qforge.service.manager import JobManager
from qforge.service.progress import Watch
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.atomic import write_json_atomic
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import AMMONIA, METHANE, WATER_EXPERIMENTAL

from .campaign_helpers import finish, summary

MOLECULES = {"water": WATER_EXPERIMENTAL, "methane": METHANE, "ammonia": AMMONIA}


def spec(name: str, **kw: object) -> JobSpec:
    return JobSpec(molecule=parse_xyz(MOLECULES[name]), name=name, **kw)  # type: ignore[arg-type]


@pytest.fixture
def camp(tmp_path: Path) -> JobStore:
    """Group `camp`: water COMPLETED, methane FAILED, ammonia QUEUED; group `other`:
    ammonia sp QUEUED plus water again (a duplicate: it joins `other`)."""
    store = JobStore(tmp_path / "jobs")
    out = store.submit_batch([(spec(n), MOLECULES[n]) for n in MOLECULES], group="camp")
    ids = {s.record.spec.name: s.record.job_id for s in out}
    finish(store, ids["water"], Status.COMPLETED, result=summary(-5.0705443744, gap=14.54))
    finish(store, ids["methane"], Status.FAILED)
    more = store.submit_batch([(spec("ammonia", task="sp"), AMMONIA),
                               (spec("water"), WATER_EXPERIMENTAL)], group="other")
    assert more[1].duplicate_of == ids["water"]
    return store


def qf(store: JobStore, *argv: str) -> int:
    return main(["--jobs-dir", str(store.root), *argv])


def test_list_by_group_and_status(camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "list", "--group", "camp", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["spec"]["name"] for r in listed] == ["water", "methane", "ammonia"]
    assert qf(camp, "list", "--group", "other", "--json") == 0
    assert sorted(r["spec"]["name"] for r in json.loads(capsys.readouterr().out)) == [
        "ammonia", "water"]
    assert qf(camp, "list", "--status", "queued", "--json") == 0
    assert [(r["spec"]["name"], r["spec"]["task"]) for r in json.loads(
        capsys.readouterr().out)] == [("ammonia", "opt"), ("ammonia", "sp")]
    assert qf(camp, "list", "--status", "FAILED") == 0
    out = capsys.readouterr().out
    assert "methane" in out.lower() or "ch4" in out.lower()
    assert "FAILED" in out and "COMPLETED" not in out


def test_unknown_group_exits_3(camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["list", "--group", "nope"], ["status", "--group", "nope"],
                 ["wait", "--group", "nope"], ["cancel", "--group", "nope"],
                 ["export", "--group", "nope", "--format", "csv"]):
        assert qf(camp, *argv) == 3, argv
        assert capsys.readouterr().err.strip() == "qforge: error: no such group: nope"


def test_bad_group_name_and_usage_exit_2(camp: JobStore,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        qf(camp, "list", "--group", "../etc")
    assert exc.value.code == 2
    assert "group '../etc' is not valid" in capsys.readouterr().err
    assert qf(camp, "wait") == 2
    assert qf(camp, "cancel", "x", "--group", "camp") == 2


def test_status_counts_rate_and_time_left(camp: JobStore,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "status", "--json") == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["counts"] == {"QUEUED": 2, "RUNNING": 0, "COMPLETED": 1, "FAILED": 1,
                               "CANCELLED": 0}
    assert whole["finished_in_window"] == 2
    assert whole["rate_per_minute"] == pytest.approx(0.2)
    assert whole["eta_seconds"] == pytest.approx(600.0)  # 2 left at 0.2 a minute
    assert qf(camp, "status", "--group", "other", "--json") == 0
    other = json.loads(capsys.readouterr().out)
    assert other["counts"]["QUEUED"] == 1 and other["counts"]["COMPLETED"] == 1
    assert other["total"] == 2
    _age_group(camp, "camp", 20 * 60)  # older than the 10-minute window
    assert qf(camp, "status", "--group", "camp") == 0
    text = capsys.readouterr().out
    assert text.startswith("Group camp: 3 job(s)")
    assert "Finished 2 of 3 (67%)" in text and "time left: 5 min" in text
    assert camp.queries.counts("camp") == {Status.QUEUED: 1, Status.RUNNING: 0,
                                   Status.COMPLETED: 1, Status.FAILED: 1, Status.CANCELLED: 0}


def _age_group(store: JobStore, group: str, seconds: float) -> None:
    """The group's members joined `seconds` ago (its index markers' mtimes)."""
    then = time.time() - seconds
    for marker in store.layout.group(group).iterdir():
        os.utime(marker, (then, then), follow_symlinks=False)


def test_a_young_group_s_rate_is_over_its_own_age_not_the_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """40 jobs finished within a group 10 s old: 240 a minute, not 4/min over 10 min."""
    store = JobStore(tmp_path / "jobs")
    # 40 distinct molecules (deduplication would fold identical ones)
    base = parse_xyz(MOLECULES["water"])
    items = []
    for i in range(40):
        moved = base.model_copy(update={"geometry": tuple(
            (x + 0.001 * i, y, z) for x, y, z in base.geometry)})
        items.append((JobSpec(molecule=moved, name=f"w{i}"), moved.to_xyz()))
    out = store.submit_batch(items, group="young")
    for sub in out:
        finish(store, sub.record.job_id, Status.COMPLETED, result=summary(-5.07))
    _age_group(store, "young", 10)
    assert qf(store, "status", "--group", "young", "--json") == 0
    view = json.loads(capsys.readouterr().out)
    assert view["finished_in_window"] == 40
    assert 10 / 60 <= view["window_minutes"] < 0.5  # the group's age, not 10 minutes
    assert 100 < view["rate_per_minute"] <= 240
    assert qf(store, "status", "--group", "young") == 0
    assert "jobs/min over the last 1" in capsys.readouterr().out  # "... last 10 s" or so


def _manager(settings: Settings, sleep: Callable[[float], None]) -> JobManager:
    admin = Identity(name="tester", role=Role.admin)
    return JobManager(JobStore(settings.jobs_dir), admin, settings, sleep=sleep)


def _wait_args(*argv: str) -> object:
    return build_parser().parse_args(["wait", *argv])


def test_wait_for_a_group_exits_0_when_all_completed(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(jobs_dir=camp.root)
    queued = [r.job_id for r in camp.queries.select(status=Status.QUEUED, group="other")]
    polls: list[int] = []

    def sleep(_: float) -> None:  # the "worker": one job per poll
        polls.append(1)
        if queued:
            finish(camp, queued.pop(), Status.COMPLETED)

    args = _wait_args("--group", "other", "--interval", "0.01")
    assert campaign.wait(args, _manager(settings, sleep)) == 0  # type: ignore[arg-type]
    captured = capsys.readouterr()
    assert "All 2 job(s) finished: 2 COMPLETED" in captured.out
    # plain progress lines (no terminal), one per change
    lines = captured.err.strip().splitlines()
    assert lines[0].endswith("1/2 finished: 1 QUEUED, 1 COMPLETED")
    assert lines[-1].endswith("2/2 finished: 2 COMPLETED")
    assert len(polls) == 1


def test_wait_exits_1_when_any_failed_and_3_for_an_unknown_job(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(jobs_dir=camp.root)
    queued = [r.job_id for r in camp.queries.select(status=Status.QUEUED, group="camp")]

    def sleep(_: float) -> None:
        if queued:
            finish(camp, queued.pop(), Status.COMPLETED)

    args = _wait_args("--group", "camp", "--interval", "0.01")
    assert campaign.wait(args, _manager(settings, sleep)) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "2 COMPLETED, 1 FAILED" in out and "FAILED (see `qforge show" in out
    water = next(r.job_id for r in camp.queries.select(status=Status.COMPLETED))
    assert qf(camp, "wait", water) == 0
    assert qf(camp, "wait", water, "no_such_job") == 3


def test_wait_gives_up_after_its_timeout(camp: JobStore,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "wait", "--group", "other", "--timeout", "0.05",
              "--interval", "0.01") == 1
    assert "gave up waiting after 0.05s: 1 QUEUED, 1 COMPLETED" in capsys.readouterr().err


def test_cancel_a_group_requests_only_unfinished_jobs(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "cancel", "--group", "camp") == 0
    assert "Cancel requested for 1 job(s) of group camp (2 already finished)" in \
        capsys.readouterr().out
    queued = [r.job_id for r in camp.queries.select(status=Status.QUEUED, group="camp")]
    assert camp.cancels.pending() == queued


def test_cancel_a_group_keeps_jobs_another_group_counts_on(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    ammonia = next(r for r in camp.queries.select(status=Status.QUEUED, group="camp"))
    camp.submit_batch([(ammonia.spec, AMMONIA)], group="third")  # a duplicate: shared
    assert qf(camp, "cancel", "--group", "third") == 0
    assert "0 job(s) of group third (0 already finished; 1 kept because another group " \
        "counts on them too" in capsys.readouterr().out
    assert camp.cancels.pending() == []
    assert qf(camp, "cancel", ammonia.job_id) == 0  # by id it goes
    assert camp.cancels.pending() == [ammonia.job_id]


def test_cancel_several_ids_goes_on_past_a_missing_one(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    queued = sorted(r.job_id for r in camp.queries.select(status=Status.QUEUED))
    assert qf(camp, "cancel", queued[0], "no_such_job", queued[1]) == 3
    assert camp.cancels.pending() == queued
    assert "no such job: no_such_job" in capsys.readouterr().err


def test_export_csv_columns_equal_the_records(camp: JobStore,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "export", "--group", "camp", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == COLUMNS
    records = {r.job_id: r for r in camp.queries.select(group="camp")}
    assert [r["job_id"] for r in rows] == sorted(records, key=lambda j: records[j].created_ns)
    for row in rows:
        rec = records[row["job_id"]]
        assert row["name"] == rec.spec.name and row["group"] == "camp"
        assert row["formula"] == rec.spec.molecule.formula
        assert row["status"] == rec.status.value
        assert row["method"] == "gfn2" and row["task"] == "opt"
        if rec.status is Status.COMPLETED:
            assert rec.result is not None
            assert float(row["energy_eh"]) == rec.result.energy == -5.0705443744
            assert float(row["gap_ev"]) == rec.result.gap
            assert float(row["dipole_debye"]) == rec.result.dipole_debye
            assert row["converged"] == "true" and row["n_imaginary"] == "0"
            assert float(row["wall_time_s"]) == rec.result.wall_time
            assert row["error_type"] == ""
        elif rec.status is Status.FAILED:
            assert rec.error is not None
            assert (row["error_type"], row["error_message"]) == (
                rec.error.type, rec.error.message)
            assert row["energy_eh"] == ""
        else:
            assert all(row[c] == "" for c in ("energy_eh", "error_type", "converged"))


def test_export_jsonl_and_a_duplicate_counts_in_its_new_group(
        camp: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert qf(camp, "export", "--group", "other", "--status", "COMPLETED",
              "--format", "jsonl") == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rec = camp.read(row["job_id"])
    assert rec.group == "camp" and row["group"] == "other"
    assert row == export_row(rec, "other")
    assert row["energy_eh"] == -5.0705443744 and row["converged"] is True


def test_export_xyz_and_sdf_carry_the_optimised_geometry(
        camp: JobStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    water = next(camp.queries.select(status=Status.COMPLETED))
    optimised = water.spec.molecule.model_copy(update={"geometry": (
        (0.0, 0.0, 0.105), (0.0, 0.772, -0.463), (0.0, -0.772, -0.463))})
    write_json_atomic(camp.layout.job_dir(water.job_id) / "result.json",
                      {"success": True, "result": {"geometry": optimised.model_dump()}})
    assert qf(camp, "export", "--status", "COMPLETED", "--format", "xyz") == 0
    frame = capsys.readouterr().out.splitlines()
    assert frame[0] == "3"
    assert f"{water.job_id} water energy=-5.0705443744 Eh" in frame[1]
    assert "geometry=optimised" in frame[1]
    assert parse_xyz("\n".join(frame) + "\n").geometry == optimised.geometry
    out = tmp_path / "camp.sdf"
    assert qf(camp, "export", "--group", "camp", "--format", "sdf", "-o", str(out)) == 0
    text = out.read_text()
    assert text.count("$$$$") == 3
    first = text.split("$$$$")[0].splitlines()
    assert first[0] == "water"
    assert ">  <energy_eh>" in first and "-5.0705443744" in first
    assert first[first.index(">  <geometry>") + 1] == "optimised"
    Chem = pytest.importorskip("rdkit.Chem")
    mols = list(Chem.SDMolSupplier(str(out), removeHs=False, sanitize=False))
    assert mols[0].GetProp("job_id") == water.job_id
    assert mols[0].GetConformer().GetAtomPosition(0).z == pytest.approx(0.105, abs=1e-4)
    assert mols[1].GetProp("geometry") == "input"  # the failed one: its input


def test_the_live_bar_shows_finished_of_total(camp: JobStore) -> None:
    pytest.importorskip("rich")
    watch = Watch(camp, [], "camp")
    out = io.StringIO()
    bar = campaign._Bar(out, "group camp")
    bar.update(watch.snapshot(), 0.0)
    bar.close()
    text = out.getvalue()
    assert "group camp" in text and "2/3" in text and "1 QUEUED, 1 COMPLETED, 1 FAILED" in text


def test_show_names_every_group_a_job_counts_in(camp: JobStore,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    water = next(camp.queries.select(status=Status.COMPLETED))
    assert qf(camp, "show", water.job_id) == 0  # type: ignore[union-attr]
    assert "Groups:    camp, other" in capsys.readouterr().out


def test_status_by_owner_counts_running_and_queued_per_owner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = JobStore(tmp_path / "jobs")
    base = parse_xyz(MOLECULES["water"])

    def mols(n: int, shift: float) -> list[tuple[JobSpec, str]]:
        out = []
        for i in range(n):
            moved = base.model_copy(update={"geometry": tuple(
                (x + shift + 0.001 * i, y, z) for x, y, z in base.geometry)})
            out.append((JobSpec(molecule=moved, name=f"w{i}"), moved.to_xyz()))
        return out

    store.submit_batch(mols(3, 0.0), group="a", owner="alice")
    store.submit_batch(mols(2, 0.5), group="b", owner="bob")
    assert qf(store, "status", "--owners", "--json") == 0
    view = json.loads(capsys.readouterr().out)
    assert view["owners"] == {"alice": {"running": 0, "queued": 3},
                              "bob": {"running": 0, "queued": 2}}
    assert qf(store, "status", "--owners") == 0
    text = capsys.readouterr().out
    assert "Per owner:" in text and any(
        line.split() == ["alice", "0", "3"] for line in text.splitlines())
    assert qf(store, "status", "--owners", "--group", "a") == 2
    assert "--owners is for the whole store" in capsys.readouterr().err
    assert qf(store, "status", "--json") == 0
    assert "owners" not in json.loads(capsys.readouterr().out)
