"""Every job records its owner: the submitter's name; "unknown" for a record written
before owners existed."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from qforge.auth import UNKNOWN_OWNER, local_identity, local_owner
from qforge.auth.roles import Role
from qforge.cli import render
from qforge.cli.main import main
from qforge.service.manager import JobManager
from qforge.settings import Settings
from qforge.store.jobstore import JobStore, StoreError
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import METHANE
from tests.molecules import WATER_EXPERIMENTAL as WATER


def _spec(xyz: str) -> JobSpec:
    return JobSpec(molecule=parse_xyz(xyz))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


def test_submit_batch_writes_the_owner_and_a_duplicate_keeps_its_own(store: JobStore,
                                                                      ) -> None:
    first = store.submit_batch([(_spec(WATER), WATER)], group="g1", owner="alice")
    assert store.read(first[0].record.job_id).owner == "alice"
    again = store.submit_batch([(_spec(WATER), WATER), (_spec(METHANE), METHANE)],
                               group="g2", owner="bob")
    assert again[0].duplicate_of == first[0].record.job_id
    assert store.read(again[0].record.job_id).owner == "alice"
    assert store.read(again[1].record.job_id).owner == "bob"
    # a forced re-run is a new job, the forcer's
    forced = store.submit_batch([(_spec(WATER), WATER)], group="g3", owner="carol",
                                force=True)
    assert store.read(forced[0].record.job_id).owner == "carol"


def test_submit_writes_the_owner_and_defaults_to_unknown(store: JobStore) -> None:
    assert store.submit(_spec(WATER), input_text=WATER, owner="alice").owner == "alice"
    record = store.submit(_spec(METHANE), input_text=METHANE)
    assert store.read(record.job_id).owner == UNKNOWN_OWNER == "unknown"


def test_a_record_written_before_owners_existed_reads_as_unknown(store: JobStore) -> None:
    record = store.submit(_spec(WATER), input_text=WATER, owner="alice")
    path = store.layout.metadata(record.job_id)
    data = json.loads(path.read_text())
    del data["owner"]
    path.write_text(json.dumps(data, indent=2) + "\n")
    assert store.read(record.job_id).owner == "unknown"
    # `qforge list --json` reads the raw records: the field is filled in there too
    [listed] = list(store.queries.select_data())
    assert isinstance(listed, dict)
    assert listed["owner"] == "unknown"
    # and a record's later writes (the worker's) carry the owner on
    store.write(store.read(record.job_id).evolve(attempts=1))
    assert json.loads(path.read_text())["owner"] == "unknown"


def test_the_owner_survives_every_later_write(store: JobStore) -> None:
    record = store.submit(_spec(WATER), input_text=WATER, owner="alice")
    store.write(record.evolve(attempts=2))
    assert store.read(record.job_id).owner == "alice"


@pytest.mark.parametrize("owner", ["", "x" * 257])
def test_an_owner_a_record_cannot_hold_is_refused_before_anything_is_written(
        store: JobStore, owner: str) -> None:
    with pytest.raises(StoreError, match="invalid owner"):
        store.submit_batch([(_spec(WATER), WATER), (_spec(METHANE), METHANE)],
                           group="g", owner=owner)
    with pytest.raises(StoreError, match="invalid owner"):
        store.submit(_spec(WATER), input_text=WATER, owner=owner)
    assert store.job_ids() == []


def test_show_prints_the_owner(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    record = store.submit(_spec(WATER), input_text=WATER, owner="alice")
    manager = JobManager(store, local_identity(), Settings(jobs_dir=store.layout.root))
    render.print_show(manager.show(record.job_id))
    assert "Owner:     alice" in capsys.readouterr().out.splitlines()


def test_a_local_submission_is_owned_by_the_os_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "chemist7")
    (tmp_path / "w.xyz").write_text(WATER)
    assert main(["--jobs-dir", str(tmp_path / "jobs"), "submit", str(tmp_path / "w.xyz")]) == 0
    store = JobStore(tmp_path / "jobs")
    assert [store.read(j).owner for j in store.job_ids()] == ["chemist7"]


def test_the_local_owner_is_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "chemist7")
    assert local_owner() == "chemist7" == getpass.getuser()
    assert local_identity().name == "chemist7"
    assert local_identity().role is Role.admin


def test_the_local_owner_without_a_user_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container running under an arbitrary uid has no passwd entry: getpass fails."""
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert local_owner() == "unknown"
