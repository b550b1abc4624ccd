"""Batch submission, groups and deduplication in the store."""

from __future__ import annotations

import multiprocessing as mp
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qforge.record import Status
from qforge.store.dedup import canonical_input, input_hash
from qforge.store.groups import default_group, validate_group
from qforge.store.jobstore import JobStore
from qforge_runner.errors import InputError
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import METHANE

from .conftest import WATER, water_spec


def methane_spec(**kw: object) -> JobSpec:
    return JobSpec(molecule=parse_xyz(METHANE), **kw)  # type: ignore[arg-type]


def test_batch_makes_one_job_per_molecule_in_the_group(store: JobStore) -> None:
    seen: list[int] = []
    out = store.submit_batch([(water_spec(), WATER), (methane_spec(), METHANE)],
                             group="camp-1", on_progress=seen.append)
    assert seen == [1, 2]
    assert [s.duplicate_of for s in out] == [None, None]
    ids = sorted(s.record.job_id for s in out)
    assert store.groups.ids("camp-1") == ids
    for s in out:
        rec = store.read(s.record.job_id)
        assert rec.group == "camp-1"
        assert rec.input_hash == input_hash(rec.spec)
    assert sorted(k.job_id for k in store.queue.queued()) == ids


def test_the_same_molecule_twice_is_one_job(store: JobStore) -> None:
    out = store.submit_batch([(water_spec(), WATER), (water_spec(name="again"), WATER)],
                             group="g")
    assert out[1].duplicate_of == out[0].record.job_id
    assert len(store.job_ids()) == 1
    assert len(store.queue.queued()) == 1


def test_a_duplicate_joins_the_new_group_without_touching_the_record(store: JobStore) -> None:
    first = store.submit_batch([(water_spec(), WATER)], group="a")[0].record
    meta = store.layout.metadata(first.job_id).read_bytes()
    again = store.submit_batch([(water_spec(), WATER)], group="b")[0]
    assert again.duplicate_of == first.job_id
    assert store.layout.metadata(first.job_id).read_bytes() == meta
    assert store.groups.ids("b") == [first.job_id]
    assert store.groups.of(store.read(first.job_id)) == ["a", "b"]
    # joining again changes nothing
    store.submit_batch([(water_spec(), WATER)], group="b")
    assert os.listdir(store.layout.memberships(first.job_id)) == ["b"]


def test_a_failed_or_cancelled_job_does_not_count(store: JobStore) -> None:
    for status in (Status.FAILED, Status.CANCELLED):
        first = store.submit_batch([(water_spec(), WATER)], group="g")[0].record
        store.write(store.read(first.job_id).evolve(status=status))
        again = store.submit_batch([(water_spec(), WATER)], group="g")[0]
        assert again.duplicate_of is None
        assert again.record.job_id != first.job_id
        store.write(store.read(again.record.job_id).evolve(status=status))
    # and the job after them is deduplicated against again
    live = store.submit_batch([(water_spec(), WATER)], group="g")[0].record
    assert store.submit_batch([(water_spec(), WATER)], group="g")[0].duplicate_of \
        == live.job_id


def test_completed_and_running_jobs_count(store: JobStore) -> None:
    for status in (Status.RUNNING, Status.COMPLETED):
        first = store.submit_batch([(methane_spec(), METHANE)], group=f"g{status.value}")
        jid = first[0].record.job_id
        store.write(store.read(jid).evolve(status=status))
        again = store.submit_batch([(methane_spec(), METHANE)], group="other")[0]
        assert again.duplicate_of == jid
        store.write(store.read(jid).evolve(status=Status.FAILED))


def test_force_runs_a_duplicate_anyway(store: JobStore) -> None:
    first = store.submit_batch([(water_spec(), WATER)], group="g")[0].record
    forced = store.submit_batch([(water_spec(), WATER)], group="g", force=True)[0]
    assert forced.duplicate_of is None and forced.record.job_id != first.job_id
    assert len(store.queue.queued()) == 2


def test_single_submit_always_creates_a_job(store: JobStore) -> None:
    a = store.submit(water_spec(), input_text=WATER)
    b = store.submit(water_spec(), input_text=WATER)
    assert a.job_id != b.job_id
    # the first one holds the hash: a batch deduplicates against it
    assert store.submit_batch([(water_spec(), WATER)], group="g")[0].duplicate_of == a.job_id


def test_canonical_input_rounds_coordinates_and_ignores_names() -> None:
    base = water_spec()
    mol = base.molecule
    nudged = mol.model_copy(update={"geometry": tuple(
        (x + 1e-11, y - 1e-11, z) for x, y, z in mol.geometry)})
    assert input_hash(base) == input_hash(base.model_copy(update={"molecule": nudged}))
    assert input_hash(base) == input_hash(water_spec(name="w", priority=5, timeout=9))
    moved = mol.model_copy(update={"geometry": tuple(
        (x + 1e-6, y, z) for x, y, z in mol.geometry)})
    assert input_hash(base) != input_hash(base.model_copy(update={"molecule": moved}))
    for other in (water_spec(method="gfn1"), water_spec(task="sp"), water_spec(charge=2),
                  water_spec(opt_level="tight"), water_spec(solvent="water"),
                  water_spec(uhf=2)):
        assert input_hash(other) != input_hash(base), canonical_input(other)


def _shifted_water(shift: float) -> tuple[JobSpec, str]:
    mol = parse_xyz(WATER)
    moved = mol.model_copy(update={"geometry": tuple(
        (x + shift, y, z) for x, y, z in mol.geometry)})
    return JobSpec(molecule=moved), moved.to_xyz()


def _submit_water(root: str, group: str, shift: float, start: object) -> str:
    start.wait(30)  # type: ignore[attr-defined]
    out = JobStore(root).submit_batch([_shifted_water(shift)], group=group)
    return out[0].record.job_id


def test_four_processes_submitting_the_same_molecule_make_one_job(tmp_path: Path) -> None:
    """Each round, 4 processes released at once submit one molecule: one job."""
    root = tmp_path / "jobs"
    JobStore(root).ensure()
    ctx = mp.get_context("spawn")
    rounds = 5
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        for r in range(rounds):
            start = manager.Event()
            pending = [pool.apply_async(_submit_water, (str(root), f"g{i}", 0.1 * r, start))
                       for i in range(4)]
            start.set()
            ids = {p.get(timeout=60) for p in pending}
            assert len(ids) == 1, f"round {r}: {ids}"
            store = JobStore(root)
            (jid,) = ids
            assert sorted(store.groups.of(store.read(jid))) == ["g0", "g1", "g2", "g3"]
    store = JobStore(root)
    assert len(store.job_ids()) == rounds
    assert len(store.queue.queued()) == rounds
    assert os.listdir(store.layout.incoming) == []


def test_a_claim_whose_submitter_died_long_ago_is_taken_over(store: JobStore) -> None:
    digest = input_hash(water_spec())
    claim = store.layout.dedup / f"{digest}.0"
    os.symlink("ghost_job", claim)
    old = 1_000_000_000
    os.utime(claim, (old, old), follow_symlinks=False)
    out = store.submit_batch([(water_spec(), WATER)], group="g")[0]
    assert out.duplicate_of is None
    assert os.readlink(store.layout.dedup / f"{digest}.1") == out.record.job_id


@pytest.mark.parametrize("name", ["", "a/b", "a..b", "-x", "x" * 64, "sp ace", "é"])
def test_invalid_group_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="group"):
        validate_group(name)


def test_default_group_is_named_after_the_first_input() -> None:
    now = datetime(2026, 12, 1, 10, 5, 12, tzinfo=UTC)
    assert default_group("data/library.sdf", now) == "library-20261201-100512"
    assert default_group("-", now) == "stdin-20261201-100512"
    assert default_group("../..weird name!!.xyz", now) == "weird-name-20261201-100512"
    assert validate_group(default_group("x" * 200 + ".smi", now))
