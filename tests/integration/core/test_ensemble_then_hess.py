"""The chemist's ensemble path in one command, with the real RDKit, xtb and worker:
`qforge submit lib.smi --conformers 4 --then hess` makes each molecule's conformers and
one Hessian per molecule that waits for all of them and starts from the lowest one's
optimised geometry; `qforge export --per-molecule` gives that Hessian's free energy in
the molecule's row."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from qforge.record import JobRecord, Status
from qforge.store.jobstore import JobStore, load_report
from qforge_runner.spec import Task

from .conftest import qforge

pytestmark = pytest.mark.xtb

LIBRARY = {"butane": "CCCC", "propanol": "CCCO", "water": "O"}


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def energy(record: JobRecord) -> float:
    assert record.result is not None, record.job_id
    return record.result.energy


def test_conformers_then_hess_gives_one_free_energy_per_molecule(
        jobs: Path, tmp_path: Path, start_worker: Callable[..., subprocess.Popen[str]]
        ) -> None:
    smi = tmp_path / "lib.smi"
    smi.write_text("".join(f"{s} {n}\n" for n, s in LIBRARY.items()))
    lines = [json.loads(line) for line in _ok(qforge(
        "submit", str(smi), "--conformers", "4", "--then", "hess", "--group", "ens",
        "--json", jobs=jobs)).splitlines()]
    ups = [item["job_id"] for item in lines if item.get("follow_up")]
    conformers = [item["job_id"] for item in lines if not item.get("follow_up")]
    assert len(ups) == len(LIBRARY)
    assert len(conformers) > len(LIBRARY)  # butane and propanol have more than one

    worker = start_worker("--until-idle", "--max-concurrent", "2", "--poll-interval", "0.2")
    assert worker.wait(timeout=600) == 0

    store = JobStore(jobs)
    records = {j: store.read(j) for j in conformers + ups}
    assert {r.status for r in records.values()} == {Status.COMPLETED}
    assert Counter(r.spec.task for r in records.values())[Task.hess] == len(LIBRARY)
    by_molecule: dict[str, list[str]] = {}
    for j in conformers:
        by_molecule.setdefault(str(records[j].molecule), []).append(j)
    assert len(by_molecule) == len(LIBRARY)
    print(f"\n{len(conformers)} conformer jobs, {len(ups)} Hessians")

    text = _ok(qforge("export", "--group", "ens", "--format", "csv", "--per-molecule",
                      jobs=jobs))
    rows = {r["molecule"]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == set(by_molecule)
    for up in ups:
        hess = records[up]
        mine = by_molecule[str(hess.molecule)]
        # one Hessian per molecule, waiting for every conformer of it
        assert sorted(hess.depends_on) == sorted(mine)
        best = min((records[j] for j in mine),
                   key=lambda r: (energy(r), r.job_id))
        report = load_report(jobs / best.job_id)
        assert report is not None and report.result is not None
        assert report.result.geometry is not None
        assert hess.spec.molecule.geometry == report.result.geometry.geometry
        row = rows[str(hess.molecule)]
        assert row["best_job_id"] == best.job_id
        assert hess.result is not None and hess.result.thermochemistry is not None
        free = hess.result.thermochemistry.free_energy
        assert float(row["free_energy_eh"]) == pytest.approx(free, abs=1e-10)
