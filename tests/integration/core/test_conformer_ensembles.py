"""Conformer ensembles with the real RDKit and real xtb, through the local door.

Six molecules (two rigid: benzene, water; four flexible: butane, ethane-1,2-diol,
propan-1-ol, methoxyethane), up to 8 conformers each, GFN2 `opt` by the local worker →
one row per molecule. Checked: the lowest conformer's energy is at most the energy of
the single conformer `qforge submit` makes without --conformers; the Boltzmann weights
(energy, best weight) equal a computation by hand from the per-job export; a conformer
submitted a second time (from the optimised geometry: it converges to the same minimum)
is counted once; a COMPLETED hess job of the same molecule gives the row its free energy.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from qforge.store.jobstore import JobStore
from tests.integration.core.conftest import qforge

pytestmark = pytest.mark.xtb

RIGID = {"benzene": "c1ccccc1", "water": "O"}
FLEXIBLE = {"butane": "CCCC", "ethanediol": "OCCO", "propanol": "CCCO",
            "methoxyethane": "CCOC"}
KB = 3.166811563e-6  # Eh/K
EH_KCAL = 627.509474


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _per_job(jobs: Path, group: str) -> list[dict[str, str]]:
    text = _ok(qforge("export", "--group", group, "--format", "csv", jobs=jobs))
    return list(csv.DictReader(io.StringIO(text)))


def _per_molecule(jobs: Path, group: str) -> dict[str, dict[str, str]]:
    text = _ok(qforge("export", "--group", group, "--format", "csv", "--per-molecule",
                      jobs=jobs))
    rows = list(csv.DictReader(io.StringIO(text)))
    as_json = [json.loads(line) for line in _ok(qforge(
        "export", "--group", group, "--format", "jsonl", "--per-molecule",
        jobs=jobs)).splitlines()]
    assert [r["molecule"] for r in as_json] == [r["molecule"] for r in rows]
    return {r["name"]: r for r in rows}


def _run_worker(start_worker: Callable[..., subprocess.Popen[str]], log: str) -> None:
    worker = start_worker("--until-idle", "--max-concurrent", "2", "--poll-interval", "0.2",
                          log_name=log)
    assert worker.wait(timeout=600) == 0


def test_six_molecules_times_eight_conformers_give_one_row_each(
        jobs: Path, tmp_path: Path, start_worker: Callable[..., subprocess.Popen[str]]
        ) -> None:
    library = {**FLEXIBLE, **RIGID}
    smi = tmp_path / "six.smi"
    smi.write_text("".join(f"{s} {n}\n" for n, s in library.items()))

    single = _ok(qforge("submit", str(smi), "--group", "single", jobs=jobs))
    assert "Submitted 6 molecules to group single: 6 new jobs" in single
    sub = _ok(qforge("submit", str(smi), "--conformers", "8", "--group", "ens", jobs=jobs))
    status = _ok(qforge("status", "--group", "ens", jobs=jobs))
    assert "of 6 molecules" in sub and "0 of 6 molecules complete" in status
    _run_worker(start_worker, "worker1.log")
    status = _ok(qforge("status", "--group", "ens", jobs=jobs))
    njobs = len(_per_job(jobs, "ens"))
    assert f"6 of 6 molecules complete; {njobs} of {njobs} conformer jobs" in status
    assert f"Submitted {njobs} conformer jobs of 6 molecules to group ens" in sub
    assert "molecules complete" not in _ok(qforge("status", "--group", "single", jobs=jobs))

    singles = {r["name"]: float(r["energy_eh"]) for r in _per_job(jobs, "single")}
    per_job = _per_job(jobs, "ens")
    assert {r["status"] for r in per_job} == {"COMPLETED"}
    rows = _per_molecule(jobs, "ens")
    assert sorted(rows) == sorted(library)
    print("\nmolecule        conformers  lowest (Eh)       single (Eh)       "
          "lowest - single (kcal/mol)  best weight")
    store = JobStore(jobs)
    key_of = {r["job_id"]: store.read(r["job_id"]).molecule for r in per_job}
    for name, row in rows.items():
        # the molecule's jobs (the first conformer is the geometry the single submission
        # made: that job joined the group as a duplicate, under its own name)
        mine = [r for r in per_job if key_of[r["job_id"]] == row["molecule"]]
        assert int(row["conformers"]) == int(row["converged"]) == len(mine)
        assert (len(mine) == 1) == (name in RIGID), name
        lowest = float(row["energy_eh"])
        assert lowest == min(float(r["energy_eh"]) for r in mine)
        assert row["best_job_id"] in {r["job_id"] for r in mine}
        assert lowest <= singles[name] + 1e-7, name
        # by hand: w_i = exp(-(E_i - E_min)/kT) / Z over the distinct conformers
        assert int(row["distinct"]) == len(mine), name  # none collapsed in this library
        energies = [float(r["energy_eh"]) for r in mine]
        kt = KB * float(row["temperature_k"])
        factors = [math.exp(-(e - lowest) / kt) for e in energies]
        weights = [f / sum(factors) for f in factors]
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
        assert float(row["best_weight"]) == pytest.approx(max(weights), abs=1e-12)
        assert float(row["boltzmann_energy_eh"]) == pytest.approx(
            sum(w * e for w, e in zip(weights, energies, strict=True)), abs=1e-10)
        gaps = [float(r["gap_ev"]) for r in mine]
        assert float(row["boltzmann_gap_ev"]) == pytest.approx(
            sum(w * g for w, g in zip(weights, gaps, strict=True)), abs=1e-9)
        if name in FLEXIBLE:
            print(f"{name:<15} {len(mine):>10}  {lowest:<16.8f}  {singles[name]:<16.8f}  "
                  f"{(lowest - singles[name]) * EH_KCAL:>26.3f}  {max(weights):.3f}")

    # Round two: each molecule's best geometry (the per-molecule SDF) again as an `opt`
    # (the same minimum: counted once) and as a `hess` (its free energy goes in the row).
    sdf = tmp_path / "best.sdf"
    sdf.write_text(_ok(qforge("export", "--group", "ens", "--format", "sdf",
                              "--per-molecule", jobs=jobs)))
    assert sdf.read_text().count("$$$$") == 6
    _ok(qforge("submit", str(sdf), "--group", "ens", jobs=jobs))
    hess = [json.loads(line) for line in _ok(qforge(
        "submit", str(sdf), "--group", "ens", "--task", "hess", "--json", jobs=jobs)
        ).splitlines()]
    best = {row["molecule"]: row["best_job_id"] for row in rows.values()}
    for item in hess:  # a follow-up step on the best conformer, as `--then hess` makes
        rec = store.read(item["job_id"])
        assert rec.molecule in best
        store.write(rec.evolve(depends_on=(best[rec.molecule],)))
    _run_worker(start_worker, "worker2.log")

    after = _per_molecule(jobs, "ens")
    hess_rows = {r["job_id"]: r for r in _per_job(jobs, "ens") if r["task"] == "hess"}
    for name, row in after.items():
        before = rows[name]
        assert int(row["conformers"]) == int(before["conformers"]) + 1, name
        assert int(row["distinct"]) == int(before["distinct"]), name  # the repeat collapsed
        assert float(row["energy_eh"]) <= float(before["energy_eh"]) + 1e-5, name
        mine = [h for j, h in hess_rows.items() if store.read(j).molecule == row["molecule"]]
        assert len(mine) == 1 and mine[0]["status"] == "COMPLETED", name
        assert row["free_energy_eh"] == mine[0]["free_energy_eh"] != "", name
    status = _ok(qforge("status", "--group", "ens", jobs=jobs))
    assert f"6 of 6 molecules complete; {njobs + 6} of {njobs + 6} conformer jobs" in status
