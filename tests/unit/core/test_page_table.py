"""The campaign page's rows (qforge.service.table through the JobManager): pages sorted
and filtered on the server, the summary's plot points and failures, and a table that
follows the store without reading the finished members again."""

from __future__ import annotations

from pathlib import Path

import pytest

from qforge.auth.roles import Identity, Role
from qforge.record import Status
from qforge.service.manager import JobManager
from qforge.service.problems import UsageError
from qforge.service.table import Tables, warm
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import JobError
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL
from tests.unit.core.campaign_helpers import finish, summary

GROUP = "camp"


def _submit(store: JobStore, n: int, group: str = GROUP) -> list[str]:
    mol = parse_xyz(WATER_EXPERIMENTAL)
    shift = sum(map(ord, group)) * 0.01  # another group, other molecules (no duplicates)
    items = []
    for i in range(n):
        moved = mol.model_copy(update={"geometry": tuple((x + 0.001 * i + shift, y, z)
                                                         for x, y, z in mol.geometry)})
        items.append((JobSpec(molecule=moved, name=f"m{i:03d}", task="sp"), moved.to_xyz()))
    return [s.record.job_id for s in store.submit_batch(items, group=group, owner="sam")]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s


def _manager(store: JobStore, tables: Tables | None = None) -> JobManager:
    return JobManager(store, Identity(name="val", role=Role.viewer),
                      Settings(jobs_dir=store.root), tables=tables or Tables(store))


def test_a_page_is_sorted_and_filtered_on_the_server(store: JobStore) -> None:
    ids = _submit(store, 12)
    for i, job_id in enumerate(ids[:8]):
        finish(store, job_id, Status.COMPLETED, result=summary(-5.0 - 0.1 * ((i * 5) % 8),
                                                               gap=10.0 + i))
    finish(store, ids[8], Status.FAILED)
    mgr = _manager(store)
    page = mgr.table_page(GROUP, sort="energy", limit=5)
    energies = [r["energy_eh"] for r in page["rows"]]
    assert page["total"] == 12 and len(energies) == 5 and energies == sorted(energies)
    down = mgr.table_page(GROUP, sort="energy", descending=True, limit=50)["rows"]
    assert [r["energy_eh"] for r in down[:8]] == sorted(energies + [
        r["energy_eh"] for r in mgr.table_page(GROUP, sort="energy", offset=5)["rows"]
        if r["energy_eh"] is not None], reverse=True)
    assert all(r["energy_eh"] is None for r in down[8:])  # missing values last, both ways
    done = mgr.table_page(GROUP, status=Status.COMPLETED, limit=50)
    assert done["total"] == 8 and {r["status"] for r in done["rows"]} == {"COMPLETED"}
    named = mgr.table_page(GROUP, text="M00", limit=50)  # any case
    assert [r["name"] for r in named["rows"]] == [f"m00{i}" for i in range(10)]
    failed = mgr.table_page(GROUP, text="xtb_error", limit=50)
    assert [r["job_id"] for r in failed["rows"]] == [ids[8]]
    second = mgr.table_page(GROUP, sort="name", offset=10, limit=5)
    assert [r["name"] for r in second["rows"]] == ["m010", "m011"]


def test_bad_page_requests_are_one_line_errors(store: JobStore) -> None:
    _submit(store, 2)
    mgr = _manager(store)
    with pytest.raises(UsageError, match="sort: one of"):
        mgr.table_page(GROUP, sort="bogus")
    with pytest.raises(UsageError, match="limit"):
        mgr.table_page(GROUP, limit=0)
    with pytest.raises(Exception, match="no such group"):
        mgr.table_page("nope")


def test_the_summary_plots_one_point_per_completed_job_and_groups_failures(
        store: JobStore) -> None:
    ids = _submit(store, 7)
    for job_id in ids[:4]:
        finish(store, job_id, Status.COMPLETED)
    finish(store, ids[4], Status.FAILED,
           error=JobError(type="convergence_error", message="SCC did not converge"))
    finish(store, ids[5], Status.FAILED,
           error=JobError(type="convergence_error", message="SCC did not converge"))
    finish(store, ids[6], Status.FAILED)
    s = _manager(store).group_summary(GROUP)
    assert sorted(p[3] for p in s["points"]) == sorted(ids[:4])
    assert sum(b["count"] for b in s["histogram"]["bins"]) == 4
    assert [(f["type"], f["count"]) for f in s["failures"]] == [
        ("convergence_error", 2), ("xtb_error", 1)]
    assert s["failures"][0]["messages"] == [{"message": "SCC did not converge", "count": 2}]
    assert s["live"]["counts"] == {"QUEUED": 0, "RUNNING": 0, "COMPLETED": 4,
                                   "FAILED": 3, "CANCELLED": 0}
    assert s["live"]["eta_seconds"] == 0.0


def test_the_table_follows_the_store_and_reads_only_the_open_members_again(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _submit(store, 6)
    for job_id in ids[:3]:
        finish(store, job_id, Status.COMPLETED)
    tables = Tables(store)
    mgr = _manager(store, tables)
    assert mgr.group_live(GROUP)["counts"]["COMPLETED"] == 3
    peeked: list[str] = []
    real_peek = store.peek
    monkeypatch.setattr(store, "peek", lambda j: peeked.append(j) or real_peek(j))
    finish(store, ids[3], Status.COMPLETED)
    finish(store, ids[4], Status.RUNNING)
    table = tables.table(GROUP)
    table.checked_wall = 0.0  # the folders changed: the margin rule makes it look again
    live = mgr.group_live(GROUP)
    assert live["counts"]["COMPLETED"] == 4 and live["counts"]["RUNNING"] == 1
    assert sorted(set(peeked)) == sorted(ids[3:])  # never the three finished before
    version = live["version"]
    table.checked_wall = 1e18  # nothing changed since: no record is read at all
    peeked.clear()
    assert mgr.group_live(GROUP)["version"] == version and peeked == []


def test_a_member_deleted_leaves_the_table(store: JobStore) -> None:
    ids = _submit(store, 3)
    finish(store, ids[0], Status.COMPLETED)
    tables = Tables(store)
    mgr = _manager(store, tables)
    assert mgr.group_live(GROUP)["total"] == 3
    store.delete(ids[0])
    tables.table(GROUP).checked_wall = 0.0
    assert mgr.group_live(GROUP)["total"] == 2
    assert [g["group"] for g in mgr.campaigns()["campaigns"]] == [GROUP]


def test_the_campaigns_list_reads_only_the_groups_it_shows_and_tables_stay_bounded(
        store: JobStore) -> None:
    for g in range(5):
        _submit(store, 3, group=f"g{g}")
    tables = Tables(store, max_tables=3, max_rows=100)
    mgr = _manager(store, tables)
    listed = mgr.campaigns(shown=2)
    assert [c["group"] for c in listed["campaigns"]] == ["g4", "g3"]  # changed last first
    assert listed["others"] == ["g0", "g1", "g2"]
    assert sorted(tables.cached()) == ["g3", "g4"]  # the others were not read
    for g in range(5):
        mgr.group_live(f"g{g}")
    assert tables.cached() == ["g2", "g3", "g4"]
    small = Tables(store, max_rows=4)
    for g in range(3):
        _manager(store, small).group_live(f"g{g}")
    assert small.cached() == ["g2"]  # 3 rows a table: one fits, the last asked kept


def test_a_server_reads_the_campaigns_changed_last_ahead_of_the_page(
        store: JobStore) -> None:
    for g in range(4):
        _submit(store, 2, group=f"w{g}")
    tables = Tables(store)
    warm(tables, 2)
    assert sorted(tables.cached()) == ["w2", "w3"]
