"""`qforge export --per-molecule` on records written through the store (no xtb): which
jobs make a row, follow-ups, bad numbers, and the refusals."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from qforge.record import Status
from qforge.service.ensemble import KB_EH_PER_K
from qforge.service.local import local_manager
from qforge.service.permolecule import COLUMNS
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL

from .campaign_helpers import finish, summary


def _submit(store: JobStore, jobs: list[tuple[str, str | None, dict[str, Any]]],
            group: str = "g") -> list[str]:
    mol = parse_xyz(WATER_EXPERIMENTAL)
    items = []
    for i, (name, key, spec) in enumerate(jobs):
        moved = mol.model_copy(update={"geometry": tuple((x, y, z + 0.01 * i)
                                                         for x, y, z in mol.geometry)})
        items.append((JobSpec(molecule=moved, name=name, **spec), moved.to_xyz(), None, key))
    return [s.record.job_id for s in store.submit_batch(items, group=group)]


def _rows(jobs_dir: Path, fmt: str = "jsonl", **kw: Any) -> tuple[int, str]:
    manager = local_manager(Settings.from_env({}, jobs_dir=jobs_dir))
    n, pieces = manager.export(fmt, None, "g", per_molecule=True, **kw)  # type: ignore[arg-type]
    return n, "".join(pieces)


def test_rows_per_molecule_and_calculation_with_follow_ups(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    a1, a2, a3, a_ff, b1, _queued = _submit(store, [
        ("a.c01", "ma", {}), ("a.c02", "ma", {}), ("a.c03", "ma", {}),
        ("a.c01", "ma", {"method": "gfnff"}),  # another method: another row
        ("b.c01", "mb", {}), ("c", None, {})])
    finish(store, a1, Status.COMPLETED, result=summary(-10.0, gap=4.0))
    finish(store, a2, Status.COMPLETED, result=summary(-9.999, gap=6.0))
    finish(store, a3, Status.FAILED)
    finish(store, a_ff, Status.COMPLETED, result=summary(-3.0))
    finish(store, b1, Status.COMPLETED, result=summary(-7.0))
    # edited by hand: not a number, left out, not a crash (a typed record refuses it)
    meta = store.layout.metadata(b1)
    bad = json.loads(meta.read_text())
    bad["result"]["gap"] = "n/a"
    meta.write_text(json.dumps(bad, indent=2) + "\n")
    # a hess follow-up on a's best conformer, and one of a molecule with no conformer here
    h1, h2 = _submit(store, [("a_hess", "ma", {"task": "hess"}),
                             ("d_hess", "md", {"task": "hess"})])
    for job, parent in ((h1, a1), (h2, a1)):
        store.write(store.read(job).evolve(depends_on=(parent,)))
    hess = summary(-10.0)
    hess["thermochemistry"] = {"temperature": 298.15, "zpe": 0.02, "enthalpy": -9.96,
                               "ts": 0.02, "g_rrho": 0.02, "free_energy": -9.98}
    finish(store, h1, Status.COMPLETED, result=hess)

    n, text = _rows(tmp_path)
    rows = [json.loads(line) for line in text.splitlines()]
    assert n == len(rows) == 5
    assert [(r["name"], r["method"]) for r in rows] == [
        ("a", "gfn2"), ("a", "gfnff"), ("b", "gfn2"), ("c", "gfn2"), ("d_hess", "gfn2")]
    a = rows[0]
    assert (a["conformers"], a["converged"], a["distinct"]) == (3, 2, 2)
    assert a["best_job_id"] == a1 and a["energy_eh"] == -10.0 and a["gap_ev"] == 4.0
    w = 1 / (1 + math.exp(-0.001 / (KB_EH_PER_K * 298.15)))  # two conformers 1 mEh apart
    assert a["best_weight"] == pytest.approx(w)
    assert a["boltzmann_gap_ev"] == pytest.approx(w * 4.0 + (1 - w) * 6.0)
    assert a["free_energy_eh"] == -9.98
    assert rows[1]["free_energy_eh"] == -9.98  # the follow-up belongs to the molecule
    assert rows[2]["gap_ev"] is None and rows[2]["boltzmann_gap_ev"] is None
    assert rows[2]["energy_eh"] == -7.0 and rows[2]["best_weight"] == 1.0
    assert rows[3]["best_job_id"] is None and rows[3]["energy_eh"] is None  # still queued
    assert rows[4]["conformers"] == 0 and rows[4]["free_energy_eh"] is None

    n, text = _rows(tmp_path, "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(table[0]) == COLUMNS and len(table) == n == 5
    n, sdf = _rows(tmp_path, "sdf")
    assert sdf.count("$$$$") == 3  # the rows with a converged conformer (a twice, b)
    assert ">  <best_weight>" in sdf and "a.c01" in sdf


def test_a_status_selects_the_jobs_the_rows_are_made_of(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    a1, _a2 = _submit(store, [("a.c01", "ma", {}), ("a.c02", "ma", {})])
    finish(store, a1, Status.COMPLETED, result=summary(-10.0))
    manager = local_manager(Settings.from_env({}, jobs_dir=tmp_path))
    n, pieces = manager.export("jsonl", Status.COMPLETED, "g", per_molecule=True)
    rows = [json.loads(line) for line in "".join(pieces).splitlines()]
    assert n == 1 and (rows[0]["conformers"], rows[0]["converged"]) == (1, 1)
    n, pieces = manager.export("jsonl", None, "g", per_molecule=True)
    rows = [json.loads(line) for line in "".join(pieces).splitlines()]
    assert n == 1 and (rows[0]["conformers"], rows[0]["converged"]) == (2, 1)
