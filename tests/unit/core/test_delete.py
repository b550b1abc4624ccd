"""qforge delete: a finished job leaves the store with every index entry naming it; a
bad id is one line, exit 2 (or 3: no such job), and nothing is deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qforge.record import Status
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import JobStore
from tests.molecules import METHANE, WATER_EXPERIMENTAL

from .campaign_helpers import MOLECULES, finish, qf, spec


def names_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")}


def test_a_finished_job_is_gone_with_its_index_entries(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    out = store.submit_batch([(spec(n), MOLECULES[n]) for n in MOLECULES], group="camp")
    ids = {s.record.spec.name: s.record.job_id for s in out}
    finish(store, ids["water"], Status.COMPLETED)
    finish(store, ids["methane"], Status.FAILED)
    # water joins a second group as a duplicate
    [dup] = store.submit_batch([(spec("water"), WATER_EXPERIMENTAL)], group="other")
    assert dup.duplicate_of == ids["water"]
    store.cancels.request(ids["methane"])  # a request left over on a finished job
    before = store.queries.counts()

    assert qf(store, "delete", ids["water"], ids["methane"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Deleted job {ids['water']} (COMPLETED)", f"Deleted job {ids['methane']} (FAILED)"]
    assert store.job_ids() == [ids["ammonia"]]
    index = names_under(store.layout.index)
    assert not any(ids["water"] in n or ids["methane"] in n for n in index), index
    after = store.queries.counts()
    assert after[Status.COMPLETED] == before[Status.COMPLETED] - 1
    assert after[Status.FAILED] == before[Status.FAILED] - 1
    assert store.groups.ids("camp") == [ids["ammonia"]] and store.groups.ids("other") == []
    # a rebuild of the index from the folders agrees: nothing left to find
    assert IndexKeeper(store).rebuild().corrupt == []
    assert store.queries.counts() == after


def test_the_same_input_submitted_again_runs_again_at_once(store: JobStore) -> None:
    first = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    finish(store, first.job_id, Status.COMPLETED)
    assert first.input_hash is not None
    gen, holder = store.dedup.holder(first.input_hash)
    assert holder == first.job_id
    assert store.dedup.holder_state(holder, first.input_hash, gen) == "live"
    assert qf(store, "delete", first.job_id) == 0
    # judged dead at once (not "pending": a submitter would wait for the folder)
    assert store.dedup.holder_state(holder, first.input_hash, gen) == "dead"
    again = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)  # no wait, no dedup
    assert again.job_id != first.job_id and again.status is Status.QUEUED


def test_an_unfinished_job_is_refused_and_nothing_is_deleted(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    done = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    finish(store, done.job_id, Status.COMPLETED)
    queued = store.submit(spec("methane"), input_text=METHANE)
    assert qf(store, "delete", done.job_id, queued.job_id) == 2
    err = capsys.readouterr().err
    assert err == (f"qforge: error: job {queued.job_id} is QUEUED: only a finished job can "
                   "be deleted (cancel it first)\n")
    assert store.job_ids() == sorted([done.job_id, queued.job_id])


@pytest.mark.parametrize(("job_id", "code", "words"), [
    ("../etc", 2, "is not valid"),
    ("water-00000000-0000", 3, "no such job"),
])
def test_a_bad_or_unknown_id_is_one_line_and_nothing_is_deleted(
        store: JobStore, capsys: pytest.CaptureFixture[str], job_id: str, code: int,
        words: str) -> None:
    done = store.submit(spec("water"), input_text=WATER_EXPERIMENTAL)
    finish(store, done.job_id, Status.COMPLETED)
    assert qf(store, "delete", done.job_id, job_id) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qforge: error: ") and words in err.lower()
    assert store.job_ids() == [done.job_id]
    assert os.path.isdir(store.layout.job_dir(done.job_id))


def test_no_id_is_a_usage_error(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        qf(store, "delete")
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
