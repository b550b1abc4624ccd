"""`qforge show` in words: a finished job's numbers with their units and its quality as a
verdict; why a queued job waits, worded for the local worker or for a cluster."""

from __future__ import annotations

import os
import time

import pytest

from qforge.auth.roles import Identity, Role
from qforge.cli import render
from qforge.record import JobRecord, Placement, Status
from qforge.service.manager import JobManager
from qforge.service.waiting import why_waiting
from qforge.settings import Settings
from qforge.store.heartbeats import Heartbeats
from qforge.store.jobstore import JobStore
from qforge_runner.quality import assess
from qforge_runner.result import JobResult
from qforge_runner.spec import Method, Task
from qforge_runner.summary import QualitySummary, ResultSummary
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.unit.core.conftest import water_spec


def _summary(*, frequencies: tuple[float, ...] | None = None, converged: bool = True,
             gap: float | None = 14.38, wall_time: float = 3.934) -> ResultSummary:
    """A result summary as the scheduler stores it (JobResult.summary of a real assess)."""
    quality = assess(method=Method.gfn2, converged=converged, gap=gap,
                     frequencies=frequencies, from_text_output=False)
    result = JobResult(
        energy=-5.070544440612, gap=gap, dipole=(0.0, 0.0, 0.7), partial_charges=None,
        geometry=None, frequencies=frequencies, converged=converged, xtb_version="6.6.1",
        method=Method.gfn2, task=Task.ohess, wall_time=wall_time, quality=quality)
    return result.summary()


def _completed(store: JobStore, summary: ResultSummary) -> JobRecord:
    record = store.submit(water_spec(), input_text=WATER)
    done = record.evolve(status=Status.COMPLETED, result=summary,
                         started_at=record.created_at, finished_at=record.created_at,
                         placement=Placement(executor="local", worker_id="worker_1",
                                             instance="i1", host="h"))
    store.write(done)
    return done


def test_a_finished_job_shows_units_and_words_not_reprs(
        store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    record = _completed(store, _summary(frequencies=(-68.71, 1600.2, 3650.0)))
    settings = Settings(jobs_dir=store.layout.root)
    admin = Identity(name="tester", role=Role.admin)
    render.print_show(JobManager(store, admin, settings).show(record.job_id))
    out = capsys.readouterr().out.splitlines()
    assert "Energy:    -5.07054444 Eh" in out
    assert "Gap:       14.380 eV" in out
    assert "Dipole:    1.78 D" in out
    assert "Converged: yes" in out
    assert "Wall time: 3.9 s" in out
    assert "Quality:   not a minimum — 1 imaginary frequency (lowest -68.7 cm⁻¹)" in out
    text = "\n".join(out)
    for repr_ in ("True", "False", "ok=", "[", "{"):
        assert repr_ not in text, repr_


def test_every_field_of_show_lines_up() -> None:
    lines = render.result_lines(_summary())
    assert len(lines) == 6
    for line in lines:  # "Wall time:" is the longest label: every value starts at column 11
        assert line[10] == " " and line[11] != " ", line


@pytest.mark.parametrize(("summary", "expected"), [
    (_summary(), "ok"),
    (_summary(frequencies=(-68.71, -30.0, 1600.0)),
     "not a minimum — 2 imaginary frequencies (lowest -68.7 cm⁻¹)"),
    (_summary(converged=False), "not converged"),
    (_summary(gap=0.05),
     "doubtful electronic state — HOMO-LUMO gap 0.050 eV is below 0.1 eV: check charge and "
     "uhf (a near-degenerate or wrong electronic state)"),
    (_summary(converged=False, frequencies=(-99.0,)),
     "not converged, not a minimum — 1 imaginary frequency (lowest -99.0 cm⁻¹)"),
])
def test_quality_reads_as_a_verdict_then_its_reasons(summary: ResultSummary,
                                                     expected: str) -> None:
    quality = summary.quality
    assert isinstance(quality, QualitySummary)
    assert render.quality_text(quality) == expected


def test_an_ok_quality_still_carries_its_notes() -> None:
    quality = {"ok": True, "converged": True, "gap_ok": True, "imaginary_frequencies": 0,
               "from_text_output": True,
               "warnings": ["xtbout.json missing: values from xtb's text output"]}
    assert render.quality_text(quality) == "ok — xtbout.json missing: values from xtb's text output"


def test_a_hand_edited_result_is_shown_as_it_is() -> None:
    lines = render.result_lines({"energy": "n/a", "wall_time": None})
    assert lines == ["Energy:    n/a"]


def test_the_outcome_line_has_units(store: JobStore, capsys: pytest.CaptureFixture[str]) -> None:
    render.print_outcome(_completed(store, _summary()))
    assert capsys.readouterr().out.endswith(
        "COMPLETED: energy -5.07054444 Eh, gap 14.380 eV\n")


# ------------------------------------------------------------- why it waits


def _queued(store: JobStore) -> JobRecord:
    store.submit(water_spec(), input_text=WATER)
    return store.submit(water_spec(), input_text=WATER)


def _waiting(store: JobStore, record: JobRecord, settings: Settings) -> str:
    return "\n".join(why_waiting(store, record, settings))


def test_on_a_local_store_the_cap_is_per_worker_and_it_says_to_start_one(
        store: JobStore) -> None:
    record = _queued(store)
    text = _waiting(store, record, Settings(jobs_dir=store.layout.root))
    assert "queue position 2 of 2" in text
    assert "0 job(s) running; the cap is 3 at once for each `qforge worker`" in text
    assert "no worker has ever run on this store: start one with `qforge worker`" in text


def test_a_dead_local_worker_is_named_by_its_last_heartbeat(store: JobStore) -> None:
    record = _queued(store)
    Heartbeats(store, "worker_1.host.1", "worker_1", lease_seconds=60).beat(0)
    old = time.time() - 600
    os.utime(store.layout.workers / "worker_1.host.1", (old, old))
    text = _waiting(store, record, Settings(jobs_dir=store.layout.root))
    assert "no worker seems to be running (last heartbeat 600s ago)" in text


def test_a_live_local_worker_leaves_only_the_queue_and_the_cap(store: JobStore) -> None:
    record = _queued(store)
    Heartbeats(store, "worker_1.host.1", "worker_1", lease_seconds=60).beat(0)
    text = _waiting(store, record, Settings(jobs_dir=store.layout.root))
    assert "the cap is 3 at once for each `qforge worker`" in text
    assert "no worker" not in text


def test_in_the_controller_pod_nobody_is_told_to_start_qforge_worker(
        store: JobStore) -> None:
    record = _queued(store)
    settings = Settings(jobs_dir=store.layout.root, pod_name="qforge-7d9-x", namespace="qf",
                        max_concurrent_jobs=50)
    text = _waiting(store, record, settings)
    assert "qforge worker" not in text and "per worker" not in text
    assert "the cap is 50 runner Jobs at once for the controller (MAX_CONCURRENT_JOBS)" in text
    assert "no controller has run on this store yet: is it up? (`kubectl -n qf get pods`)" \
        in text


def test_a_store_a_controller_beats_on_is_a_clusters(store: JobStore) -> None:
    record = _queued(store)
    settings = Settings(jobs_dir=store.layout.root, namespace="qf")
    beat = Heartbeats(store, "k8s.qf.worker_1", "worker_1", lease_seconds=60)
    beat.beat(0)
    text = _waiting(store, record, settings)
    assert "qforge worker" not in text
    assert "the cap is 3 runner Jobs at once for the controller" in text
    assert "no controller" not in text
    old = time.time() - 120
    os.utime(store.layout.workers / "k8s.qf.worker_1", (old, old))
    text = _waiting(store, record, settings)
    assert "no controller seems to be running (last heartbeat 120s ago)" in text
    assert "qforge worker" not in text


def test_a_queued_job_says_whose_turn_is_next(store: JobStore) -> None:
    for _ in range(2):
        store.submit(water_spec(), input_text=WATER, owner="alice")
    mine = [store.submit(water_spec(), input_text=WATER, owner="bob") for _ in range(3)]
    text = _waiting(store, mine[2], Settings(jobs_dir=store.layout.root,
                                             max_concurrent_jobs=6))
    assert "queue position 5 of 5" in text
    assert ("bob has 0 of 6 slots; alice's turn is next; position 3 among bob's jobs"
            in text.splitlines())
