from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from qforge.record import Placement, Status
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore, StoreError
from qforge.store.layout import QueueKey, RunningMarker

from .conftest import WATER, water_spec

HERE = Placement(executor="local", worker_id="w", instance="w-1")


def test_submit_writes_record_input_and_queue_marker(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    job_dir = store.layout.job_dir(rec.job_id)
    assert (job_dir / "input.xyz").read_text() == WATER
    meta = (job_dir / "metadata.json").read_text()
    # `grep '"status"' metadata.json` (a habit from the worker qforge replaces): one line
    assert [line.strip() for line in meta.splitlines() if '"status"' in line] == [
        '"status": "QUEUED",'
    ]
    data = json.loads(meta)
    for key in ("schema_version", "job_id", "status", "created_at", "updated_at", "started_at",
                "finished_at", "spec", "result", "error"):
        assert key in data
    assert [k.job_id for k in store.queue.queued()] == [rec.job_id]
    # no staging or temp files left behind
    assert os.listdir(store.layout.incoming) == []
    assert sorted(os.listdir(job_dir)) == ["input.xyz", "metadata.json"]


def test_submit_with_an_existing_id_is_refused(store: JobStore) -> None:
    store.submit(water_spec(), input_text=WATER, job_id="mine")
    with pytest.raises(StoreError, match="already exists"):
        store.submit(water_spec(), input_text=WATER, job_id="mine")


def test_queue_order_is_priority_then_fifo(store: JobStore) -> None:
    a = store.submit(water_spec(), input_text=WATER, job_id="a")
    b = store.submit(water_spec(priority=5), input_text=WATER, job_id="b")
    c = store.submit(water_spec(), input_text=WATER, job_id="c")
    d = store.submit(water_spec(priority=-3), input_text=WATER, job_id="d")
    e = store.submit(water_spec(priority=5), input_text=WATER, job_id="e")
    assert [k.job_id for k in store.queue.queued()] == [
        b.job_id, e.job_id, a.job_id, c.job_id, d.job_id]


def test_queue_key_round_trip() -> None:
    key = QueueKey.make(-1000, 123, "x_1")
    assert QueueKey.parse(key.name) == key
    assert key.priority == -1000
    assert QueueKey.parse("garbage") is None


def test_running_markers_follow_the_folder_and_parse_each_name_once(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    running = store.layout.running
    for name in ("a+w-1", "b+w-2", "garbage"):
        (running / name).touch()
    parses: list[str] = []
    real = RunningMarker.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[RunningMarker], name: str) -> RunningMarker | None:
        parses.append(name)
        return real(cls, name)

    monkeypatch.setattr(RunningMarker, "parse", classmethod(counting))
    assert sorted((m.job_id, m.instance) for m in store.queue.running_markers()) == [
        ("a", "w-1"), ("b", "w-2")]
    assert sorted(parses) == ["a+w-1", "b+w-2", "garbage"]
    # a pass lists the folder several times: names seen before are not parsed again
    (running / "a+w-1").unlink()
    (running / "c+w-1").touch()
    parses.clear()
    assert sorted(m.job_id for m in store.queue.running_markers()) == ["b", "c"]
    assert store.queue.running_markers() == store.queue.running_markers()
    assert parses == ["c+w-1"]


def test_claim_is_exclusive_and_marks_running(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    key = store.queue.queued()[0]
    first = store.queue.claim(key, "w-1", HERE)
    second = store.queue.claim(key, "w-2", HERE)
    assert first is not None and second is None
    assert first.record.status is Status.RUNNING
    assert first.record.attempts == 1
    assert store.read(rec.job_id).placement == HERE
    assert store.queue.queued() == []
    assert [m.job_id for m in store.queue.running_markers()] == [rec.job_id]


def test_stale_marker_of_a_finished_job_is_dropped_on_claim(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    store.write(store.read(rec.job_id).evolve(status=Status.COMPLETED))
    key = store.queue.queued()[0]
    assert store.queue.claim(key, "w-1", HERE) is None
    assert store.queue.queued() == [] and store.queue.running_markers() == []


def test_a_corrupt_record_is_reported_and_skipped(store: JobStore) -> None:
    bad = store.submit(water_spec(), input_text=WATER)
    good = store.submit(water_spec(), input_text=WATER)
    store.layout.metadata(bad.job_id).write_text("{ not json")
    with pytest.raises(CorruptRecord, match=bad.job_id):
        store.read(bad.job_id)
    claimed = [store.queue.claim(k, "w", HERE) for k in store.queue.queued()]
    assert [c.record.job_id for c in claimed if c] == [good.job_id]
    items = list(store.iter_records())
    assert {type(i).__name__ for i in items} == {"JobRecord", "CorruptRecord"}


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.read("nope")
    with pytest.raises(JobNotFound):
        store.read("../etc")


def test_index_is_rebuilt_when_missing(store: JobStore) -> None:
    recs = [store.submit(water_spec(), input_text=WATER) for _ in range(3)]
    done = store.read(recs[0].job_id).evolve(status=Status.COMPLETED)
    store.write(done)
    shutil.rmtree(store.layout.index)
    keeper = IndexKeeper(store)
    assert keeper.refresh() == 2
    assert sorted(k.job_id for k in store.queue.queued()) == sorted(r.job_id for r in recs[1:])


def test_rebuild_removes_markers_of_jobs_no_longer_queued(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    store.write(store.read(rec.job_id).evolve(status=Status.FAILED))
    report = IndexKeeper(store).rebuild()
    assert report.markers_removed == 1
    assert store.queue.queued() == []


def test_job_copied_in_by_hand_is_found_by_the_next_refresh(tmp_path: Path,
                                                            store: JobStore) -> None:
    keeper = IndexKeeper(store)
    keeper.rebuild()
    other = JobStore(tmp_path / "other")
    rec = other.submit(water_spec(), input_text=WATER)
    shutil.copytree(other.layout.job_dir(rec.job_id), store.layout.job_dir(rec.job_id))
    assert store.queue.queued() == []
    assert keeper.refresh() == 1
    assert [k.job_id for k in store.queue.queued()] == [rec.job_id]
    assert keeper.refresh() == 0  # nothing changed: one stat, no reads


def test_rebuild_reports_corrupt_records(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    store.layout.metadata(rec.job_id).write_text("[]")
    report = IndexKeeper(store).rebuild()
    assert report.corrupt == [rec.job_id]


def test_cancel_request_for_queued_job(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    store.cancels.request(rec.job_id)
    assert store.cancels.pending() == [rec.job_id]
    cancelled = store.queue.cancel_queued(store.queue.queued()[0], "w", HERE)
    final = store.read(rec.job_id)
    assert cancelled == final and final.status is Status.CANCELLED
    assert final.error is not None and final.error.type == "cancelled"
    assert final.error.message == "cancelled by user before it started"
    # its queue marker is gone: a second cancel claims nothing
    key = QueueKey.make(rec.spec.priority, rec.created_ns, rec.job_id)
    assert store.queue.cancel_queued(key, "w", HERE) is None
    assert store.cancels.pending() == [] and store.queue.running_markers() == []


# ------------------------------------------------- evolve and reading back what was written

def test_evolve_refuses_bad_changes_and_keeps_the_validated_spec(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    running = rec.evolve(status=Status.RUNNING, placement=HERE, attempts=1)
    assert running.status is Status.RUNNING and running.spec is rec.spec
    assert running.updated_at >= rec.updated_at
    for bad in ({"status": "DONE"}, {"attempts": -1}, {"no_such_field": 1},
                {"placement": {"executor": "mars"}},
                {"spec": {"molecule": "2\n\nH 0 0 0\nH 0 0 0.1\n"}}):
        with pytest.raises(ValidationError):
            rec.evolve(**bad)


def test_a_record_read_back_unchanged_is_the_one_written(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    running = store.read(rec.job_id).evolve(status=Status.RUNNING, placement=HERE)
    store.write(running)
    assert store.read(rec.job_id) is running  # the same bytes: not validated again
    # a fresh store object (another process) validates it, and gets the same record
    assert JobStore(store.root).read(rec.job_id) == running


def test_a_record_changed_on_disk_after_the_write_is_validated_again(store: JobStore) -> None:
    rec = store.submit(water_spec(), input_text=WATER)
    store.write(rec.evolve(status=Status.RUNNING, placement=HERE))
    path = store.layout.metadata(rec.job_id)
    data = json.loads(path.read_text())
    # a corrupt molecule (two atoms 0.1 Å apart) written by someone else
    data["spec"]["molecule"]["geometry"][1] = [0.0, 0.0, 0.2173]
    path.write_text(json.dumps(data, indent=2) + "\n")
    with pytest.raises(CorruptRecord, match="closer than"):
        store.read(rec.job_id)
    # a valid hand edit is seen as it is
    data = json.loads(path.read_text())
    data["spec"]["molecule"]["geometry"][1] = [0.0, 0.7572, -0.4692]
    data["status"] = "QUEUED"
    path.write_text(json.dumps(data, indent=2) + "\n")
    assert store.read(rec.job_id).status is Status.QUEUED
