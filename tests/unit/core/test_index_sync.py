"""The store's indexes are derived data: deleted, stale or missing entries are rebuilt
from the metadata files and every query gives the same answers; a start-up reads only
what changed; the crash windows of each transition are repaired."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from qforge.record import Status
from qforge.store.dedup import input_hash
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import JobStore
from qforge.store.layout import DONE_STATUSES, RunningMarker
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import AMMONIA, METHANE, WATER_EXPERIMENTAL

from .campaign_helpers import HERE, finish

XYZ = {"water": WATER_EXPERIMENTAL, "methane": METHANE, "ammonia": AMMONIA}


def spec(name: str, **kw: Any) -> JobSpec:
    return JobSpec(molecule=parse_xyz(XYZ[name]), name=name, **kw)


def populate(store: JobStore) -> dict[str, str]:
    out = store.submit_batch([(spec(n), XYZ[n]) for n in XYZ], group="a")
    ids = {s.record.spec.name or "": s.record.job_id for s in out}
    finish(store, ids["water"], Status.COMPLETED)
    finish(store, ids["methane"], Status.CANCELLED)
    sp = store.submit_batch([(spec("water", task="sp"), WATER_EXPERIMENTAL),
                             (spec("water"), WATER_EXPERIMENTAL)], group="b")
    ids["water_sp"] = sp[0].record.job_id
    finish(store, ids["water_sp"], Status.RUNNING)
    return ids


def answers(store: JobStore) -> dict[str, Any]:
    """Everything the commands ask of the index."""
    return {
        "counts": store.queries.counts(),
        "counts_a": store.queries.counts("a"),
        "counts_b": store.queries.counts("b"),
        "group_a": store.groups.ids("a"),
        "group_b": store.groups.ids("b"),
        **{f"status_{s.value}": sorted(r.job_id for r in store.queries.select(status=s)  # type: ignore[union-attr]
                                       ) for s in Status},
        "holder": store.dedup.holder(input_hash(spec("water")))[1],
    }


def fresh(store: JobStore) -> JobStore:
    return JobStore(store.root)  # no in-process memo


def test_a_deleted_index_is_rebuilt_with_the_same_answers(store: JobStore) -> None:
    populate(store)
    before = answers(store)
    shutil.rmtree(store.layout.index)
    report = IndexKeeper(fresh(store)).sync()
    assert report.read == 4
    assert answers(fresh(store)) == before
    # and deduplication still finds the water job
    again = fresh(store).submit_batch([(spec("water"), WATER_EXPERIMENTAL)], group="c")
    assert again[0].duplicate_of == before["holder"]


def test_a_stale_index_is_repaired(store: JobStore) -> None:
    ids = populate(store)
    before = answers(store)
    lay = store.layout
    # a done marker lost, a marker of a job deleted by hand, a group marker lost
    done = lay.done("COMPLETED")
    (marker,) = os.listdir(done)
    os.unlink(done / marker)
    (done / "00000000000000000001-gone_job").touch()
    os.unlink(lay.group("a") / ids["ammonia"])
    report = IndexKeeper(fresh(store)).sync()
    assert report.read == 1  # the water job: the only folder no status index held
    assert report.stale_removed == 1
    (fresh(store).layout.group("a") / ids["ammonia"]).touch()  # sync reads only what
    assert answers(fresh(store)) == before  # changed; a full rebuild restores the rest
    os.unlink(lay.group("a") / ids["ammonia"])
    IndexKeeper(fresh(store)).rebuild()
    assert answers(fresh(store)) == before


def test_rebuild_drops_markers_that_disagree_with_the_records(store: JobStore) -> None:
    ids = populate(store)
    before = answers(store)
    # a hand edit made a marker lie; a never-completed join left a group marker
    (store.layout.done("FAILED") / f"{0:020d}-{ids['ammonia']}").touch()
    stale = store.layout.group("b") / ids["methane"]
    stale.touch()
    os.utime(stale, (1e9, 1e9))
    report = IndexKeeper(fresh(store)).rebuild()
    assert report.stale_removed == 2
    assert answers(fresh(store)) == before


def test_a_folder_copied_in_by_hand_appears_everywhere(tmp_path: Path,
                                                      store: JobStore) -> None:
    populate(store)
    keeper = IndexKeeper(store)
    keeper.sync()
    other = JobStore(tmp_path / "other")
    first = other.submit_batch([(spec("ammonia", charge=1, uhf=1), AMMONIA)], group="x")
    jid = first[0].record.job_id
    finish(other, jid, Status.COMPLETED)
    other.groups.join(other.read(jid), "y")
    shutil.copytree(other.layout.job_dir(jid), store.layout.job_dir(jid))
    assert keeper.refresh() == 0  # no queue marker: it is COMPLETED
    s = fresh(store)
    assert s.groups.ids("x") == [jid] and s.groups.ids("y") == [jid]
    assert s.queries.counts("y")[Status.COMPLETED] == 1
    assert jid in [r.job_id for r in s.queries.select(status=Status.COMPLETED)]  # type: ignore[union-attr]
    assert s.dedup.holder(input_hash(spec("ammonia", charge=1, uhf=1)))[1] == jid
    # a second copy found at the next start-up instead
    second = other.submit(spec("methane", charge=2), input_text=METHANE, group="x")
    shutil.copytree(other.layout.job_dir(second.job_id), store.layout.job_dir(second.job_id))
    report = IndexKeeper(fresh(store)).sync()
    assert report.read == 1 and report.markers_created == 1
    assert second.job_id in [k.job_id for k in fresh(store).queue.queued()]


def test_start_up_reads_only_the_folders_no_index_holds(store: JobStore) -> None:
    populate(store)
    report = IndexKeeper(fresh(store)).sync()
    # nothing unindexed; only the one running job's record is looked at
    assert report.read == 0 and report.markers_created == 0 and report.indexed == 0


def test_crash_between_a_terminal_record_and_its_done_marker(store: JobStore) -> None:
    ids = populate(store)
    job = ids["water_sp"]
    running = store.read(job)
    marker = RunningMarker(job, "w-1")
    assert (store.layout.running / marker.name).exists()
    # the scheduler wrote COMPLETED and died before store.queue.finish made the marker
    store.write(running.evolve(status=Status.COMPLETED, finished_at=running.updated_at))
    assert fresh(store).queries.counts()[Status.COMPLETED] == 1
    report = IndexKeeper(fresh(store)).sync()
    assert report.indexed == 1
    assert fresh(store).queries.counts()[Status.COMPLETED] == 2


def test_crash_in_a_join_leaves_the_job_out_of_the_group(store: JobStore) -> None:
    ids = populate(store)
    # the group marker was made, the membership file (the commit point) was not
    (store.layout.group("b") / ids["ammonia"]).touch()
    assert ids["ammonia"] in store.groups.ids("b")
    assert ids["ammonia"] not in [r.job_id for r in store.queries.select(group="b")]  # type: ignore[union-attr]
    assert ids["ammonia"] not in store.groups.statuses("b")


def test_crash_before_the_folder_appears(store: JobStore) -> None:
    """A submitter died after its claim and markers, before the rename: the group and
    the queue ignore the missing job, and the next submission waits out the claim."""
    digest = input_hash(spec("methane", charge=2))
    claim = store.layout.dedup / f"{digest}.0"
    os.symlink("lost_job", claim)
    (store.layout.group("a")).mkdir(parents=True, exist_ok=True)
    (store.layout.group("a") / "lost_job").touch()
    assert list(store.queries.select(group="a")) == []
    os.utime(claim, (1e9, 1e9), follow_symlinks=False)  # long ago
    out = store.submit_batch([(spec("methane", charge=2), METHANE)], group="a")
    assert out[0].duplicate_of is None
    assert [r.job_id for r in store.queries.select(group="a")] == [out[0].record.job_id]  # type: ignore[union-attr]


def test_counts_match_the_records(store: JobStore) -> None:
    populate(store)
    truth = dict.fromkeys(Status, 0)
    for rec in store.iter_records():
        truth[rec.status] += 1  # type: ignore[union-attr]
    assert store.queries.counts() == truth
    assert set(DONE_STATUSES) == {s.value for s in Status if s.terminal}
    assert HERE.instance == "w-1"
