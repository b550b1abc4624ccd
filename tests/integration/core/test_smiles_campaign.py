"""A campaign with real xtb: 100 molecules from one SMILES file to one CSV of energies.

`qforge submit library.smi` → `qforge worker --until-idle` → `qforge export --format csv`;
each energy must equal a direct xtb run (tests/integration/runner/helpers.direct_energy)
on the same embedded geometry, within 1e-6 Eh. "The same embedded geometry": the test
embeds each SMILES again through the reader (ETKDGv3 with the fixed seed, MMFF94), and
checks first that the job's input.xyz is exactly that geometry; the jobs are single
points, so xtb computes at that geometry and nowhere else.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rdkit import Chem

from qforge.inputs.chem import smiles_to_molecule
from qforge_runner.spec import JobSpec, Task
from tests.integration.core.conftest import qforge
from tests.integration.runner.helpers import direct_energy

pytestmark = pytest.mark.xtb

HEADS = ("C", "CC", "CCC", "CC(C)", "C=C", "C#C", "CCCC", "C1CC1", "OC", "NC", "FC", "C=CC")
TAILS = ("", "O", "N", "F", "Cl", "C=O", "C#N", "OC", "S", "C(=O)O", "N(C)C", "C(F)(F)F")
# A cation, an anion and a radical: charge and unpaired electrons come from the SMILES.
SPECIAL = (("[NH4+]", "ammonium"), ("CC(=O)[O-]", "acetate"), ("[CH3]", "methyl_radical"))


def library() -> list[tuple[str, str]]:
    """100 distinct small molecules (≤ 22 atoms with hydrogens), with names."""
    seen: dict[str, str] = {}
    for head in HEADS:
        for tail in TAILS:
            canonical = Chem.MolToSmiles(Chem.MolFromSmiles(head + tail))
            seen.setdefault(canonical, head + tail)
    chosen = [(smiles, f"m{k:03d}") for k, smiles in enumerate(list(seen.values())[:97])]
    chosen += SPECIAL
    assert len({Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s, _ in chosen}) == 100
    return chosen


def test_a_smiles_library_through_the_worker_to_csv_matches_direct_xtb(
        jobs: Path, tmp_path: Path, start_worker: Callable[..., subprocess.Popen[str]]
        ) -> None:
    molecules = library()
    smi = tmp_path / "library.smi"
    smi.write_text("# 100 small molecules\n" + "".join(f"{s} {n}\n" for s, n in molecules))

    out = qforge("submit", str(smi), "--task", "sp", "--group", "lib100", "--json", jobs=jobs)
    assert out.returncode == 0, out.stderr
    submitted = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["name"] for s in submitted] == [n for _, n in molecules]
    assert all(s["status"] == "QUEUED" and s["duplicate_of"] is None for s in submitted)

    worker = start_worker("--until-idle", "--max-concurrent", "2", "--poll-interval", "0.2")
    assert worker.wait(timeout=600) == 0

    exported = qforge("export", "--group", "lib100", "--format", "csv", jobs=jobs)
    assert exported.returncode == 0, exported.stderr
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert len(rows) == 100
    assert {row["status"] for row in rows.values()} == {"COMPLETED"}
    assert {(row["group"], row["task"]) for row in rows.values()} == {("lib100", "sp")}

    specs: dict[str, JobSpec] = {}
    for (smiles, name), sub in zip(molecules, submitted, strict=True):
        molecule, charge, uhf = smiles_to_molecule(smiles, max_atoms=100)
        assert (jobs / sub["job_id"] / "input.xyz").read_text() == molecule.to_xyz()
        specs[name] = JobSpec(molecule=molecule, charge=charge, uhf=uhf, task=Task.sp)
    assert (specs["ammonium"].charge, specs["acetate"].charge) == (1, -1)
    assert specs["methyl_radical"].uhf == 1

    with ThreadPoolExecutor(max_workers=2) as pool:
        direct = dict(zip(specs, pool.map(
            lambda item: direct_energy(item[1], tmp_path / "direct" / item[0]),
            specs.items()), strict=True))
    for name, energy in direct.items():
        assert float(rows[name]["energy_eh"]) == pytest.approx(energy, abs=1e-6), name
