"""A store written by the release before the store was split into modules (the
fixture tests/fixtures/store_v1/store.tar.gz, made by make.py there) opens as it is:
the new code lists, counts, claims, finishes, cancels and deletes on it, and writes
records byte for byte in the format that release wrote."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from qforge.record import JobRecord, Placement, Status
from qforge.store.heartbeats import beat_ages
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import METHANOL, WATER_EXPERIMENTAL

FIXTURE = Path(__file__).parents[2] / "fixtures" / "store_v1" / "store.tar.gz"

# name -> (status, group, owner) of each job the fixture holds
EXPECTED = {
    "water": (Status.COMPLETED, "campaign-a", "alice"),
    "ammonia": (Status.FAILED, "campaign-a", "alice"),
    "methane": (Status.CANCELLED, "campaign-a", "alice"),
    "methanol": (Status.RUNNING, "campaign-a", "alice"),
    "water-gfn1": (Status.RUNNING, "campaign-a", "alice"),
    "ethane-hi": (Status.QUEUED, "campaign-a", "alice"),
    "ammonia-b": (Status.QUEUED, "campaign-b", "bob"),
}
PLACEMENT = Placement(executor="local", worker_id="w2", instance="worker-new", host="h")


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="tar")
    return JobStore(tmp_path / "jobs")


def ids_by_name(store: JobStore) -> dict[str, str]:
    out = {}
    for record in store.iter_records():
        assert isinstance(record, JobRecord)
        assert record.spec.name is not None
        out[record.spec.name] = record.job_id
    return out


def test_every_record_reads_as_written_and_is_written_back_byte_for_byte(
        store: JobStore) -> None:
    ids = ids_by_name(store)
    assert set(ids) == set(EXPECTED)
    for name, (status, group, owner) in EXPECTED.items():
        record = store.read(ids[name])
        assert (record.status, record.group, record.owner) == (status, group, owner)
        raw = store.layout.metadata(record.job_id).read_bytes()
        assert (record.model_dump_json(indent=2) + "\n").encode() == raw
    water = store.read(ids["water"])
    assert water.result is not None and water.result.energy == -5.070544440612
    assert store.read(ids["ammonia"]).error is not None


def test_lists_and_counts(store: JobStore) -> None:
    ids = ids_by_name(store)
    for status in Status:
        want = {ids[n] for n, (s, _, _) in EXPECTED.items() if s is status}
        got = {r.job_id for r in store.queries.select(status=status) if isinstance(r, JobRecord)}
        assert got == want, status
    assert store.queries.counts() == {Status.QUEUED: 2, Status.RUNNING: 2, Status.COMPLETED: 1,
                              Status.FAILED: 1, Status.CANCELLED: 1}
    # water was submitted again in campaign-b as a duplicate: it counts there too
    assert store.groups.ids("campaign-b") == sorted([ids["water"], ids["ammonia-b"]])
    assert store.queries.counts(group="campaign-b") == {
        Status.QUEUED: 1, Status.RUNNING: 0, Status.COMPLETED: 1, Status.FAILED: 0,
        Status.CANCELLED: 0}
    assert len(list(store.queries.select(group="campaign-a"))) == 6
    assert [k.job_id for k in store.queue.queued()] == [ids["ethane-hi"], ids["ammonia-b"]]
    assert {m.job_id for m in store.queue.running_markers()} == {ids["methanol"], ids["water-gfn1"]}
    assert store.cancels.pending() == [ids["water-gfn1"]]
    assert "worker-fixture" in beat_ages(store, 0.0)


def test_start_up_sync_finds_the_index_complete(store: JobStore) -> None:
    report = IndexKeeper(store).sync()
    assert (report.jobs, report.queued, report.markers_created, report.markers_removed,
            report.indexed, report.stale_removed, report.corrupt) == (7, 2, 0, 0, 0, 0, [])
    assert report.read == 0  # every folder is indexed: none read to index it


def test_claim_and_finish(store: JobStore) -> None:
    ids = ids_by_name(store)
    key = store.queue.queued()[0]
    claimed = store.queue.claim(key, "worker-new", PLACEMENT)
    assert claimed is not None and claimed.record.job_id == ids["ethane-hi"]
    assert store.read(ids["ethane-hi"]).status is Status.RUNNING
    done = claimed.record.evolve(status=Status.COMPLETED, finished_at=claimed.record.updated_at)
    store.queue.finish(claimed, done)
    assert store.queries.counts()[Status.COMPLETED] == 2
    assert ids["ethane-hi"] in store.queries.finished_ids(Status.COMPLETED)
    assert ids["ethane-hi"] not in {m.job_id for m in store.queue.running_markers()}


def test_cancel_a_queued_and_a_running_job(store: JobStore) -> None:
    ids = ids_by_name(store)
    store.cancels.request(ids["ammonia-b"])
    key = next(k for k in store.queue.queued() if k.job_id == ids["ammonia-b"])
    cancelled = store.queue.cancel_queued(key, "worker-new", PLACEMENT)
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    assert store.cancels.pending() == [ids["water-gfn1"]]
    # the running job with the pending request: whoever runs it finishes it cancelled
    marker = next(m for m in store.queue.running_markers() if m.job_id == ids["water-gfn1"])
    new = store.queue.take_over(marker, "worker-new")
    assert new is not None
    record = store.read(ids["water-gfn1"])
    store.queue.finish(Claimed(record, new), record.cancelled_by_user(started=True))
    assert store.cancels.pending() == []
    assert store.queries.counts()[Status.CANCELLED] == 3
    assert store.queries.counts()[Status.RUNNING] == 1


def test_delete_and_dedup(store: JobStore) -> None:
    ids = ids_by_name(store)
    # a live input is deduplicated against the old store's claim
    [dup] = store.submit_batch(
        [(JobSpec(molecule=parse_xyz(METHANOL), name="again"), METHANOL)], group="c")
    assert dup.duplicate_of == ids["methanol"]
    store.delete(ids["water"])
    assert not store.layout.job_dir(ids["water"]).exists()
    assert store.groups.ids("campaign-b") == [ids["ammonia-b"]]
    assert store.queries.counts()[Status.COMPLETED] == 0
    # its input runs again
    [again] = store.submit_batch(
        [(JobSpec(molecule=parse_xyz(WATER_EXPERIMENTAL), name="w"), WATER_EXPERIMENTAL)],
        group="c")
    assert again.duplicate_of is None
    assert again.record.job_id != ids["water"]
