"""The same molecules out as in, a changed structure flagged, thermochemistry as xtb
printed it: `qforge submit` → `qforge worker` (real xtb) → `qforge export/show/result`.

One store and one worker run serve every test of this module (19 small jobs, gfn2), to
keep the tier's time short: SMILES and SDF libraries (aromatic rings, double and triple
bonds, cations, anions, zwitterions, nitro groups, radicals), an XYZ library (bonds
perceived at export), a hydronium-hydroxide pair that neutralises itself (a proton
moves: flagged), and Hessians of water, ammonia and caffeine.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import qcelemental as qcel
from rdkit import Chem
from rdkit.Chem import AllChem

from qforge.store.jobstore import JobStore
from qforge.store.layout import TOPOLOGY_FILE
from tests.integration.runner.helpers import direct_output
from tests.molecules import AMMONIA, CAFFEINE, WATER
from tests.rdkit_reading import read_sdf

from .conftest import qforge

pytestmark = pytest.mark.xtb

SMILES = {"pyridine": "c1ccncc1", "acetonitrile": "CC#N", "acrolein": "C=CC=O",
          "ammonium": "[NH4+]", "acetate": "CC(=O)[O-]", "betaine": "C[N+](C)(C)CC(=O)[O-]",
          "nitromethane": "C[N+](=O)[O-]", "methyl": "[CH3]"}
SDF = {"phenol": "Oc1ccccc1", "nitrobenzene": "O=[N+]([O-])c1ccccc1",
       "tetramethylammonium": "C[N+](C)(C)C", "formate": "O=C[O-]", "allyl": "[CH2]C=C"}
XYZ = {"acetic_acid": "CC(=O)O", "benzene": "c1ccccc1", "propyne": "CC#C"}
# H3O+ with one proton 1.05 Å from its oxygen pointing at an OH- 2.5 Å away: the gas-phase
# optimisation hands that proton over (two waters): a connectivity change.
ION_PAIR = """6
hydronium hydroxide
O 0.000000 0.000000 0.000000
H 0.000000 0.000000 1.050000
H 0.940000 0.000000 -0.330000
H -0.470000 0.814000 -0.330000
O 0.000000 0.000000 2.500000
H 0.000000 0.940000 2.830000
"""


def embedded(smiles: str, name: str) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    mol.SetProp("_Name", name)
    return mol


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


@dataclass
class Campaign:
    jobs: Path
    ids: dict[str, str]  # molecule name -> job id

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = qforge(*args, jobs=self.jobs)
        assert out.returncode == 0, out.stderr
        return out


def _submit(jobs: Path, path: Path, group: str, *options: str) -> dict[str, str]:
    out = qforge("submit", str(path), "--group", group, "--json", *options, jobs=jobs)
    assert out.returncode == 0, out.stderr
    return {row["name"]: row["job_id"] for row in map(json.loads, out.stdout.splitlines())}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    tmp = tmp_path_factory.mktemp("chemistry")
    jobs = tmp / "jobs"
    ids: dict[str, str] = {}
    smi = tmp / "library.smi"
    smi.write_text("".join(f"{s} {n}\n" for n, s in SMILES.items()))
    ids |= _submit(jobs, smi, "smi")
    sdf = tmp / "library.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for name, smiles in SDF.items():
            writer.write(embedded(smiles, name))
    ids |= _submit(jobs, sdf, "sdf")
    xyz = tmp / "library.xyz"
    xyz.write_text("".join(Chem.MolToXYZBlock(embedded(s, n)) for n, s in XYZ.items()))
    in_order = _submit(jobs, xyz, "xyz")  # named library_1, library_2, ...
    ids |= dict(zip(XYZ, in_order.values(), strict=True))
    pair = tmp / "ion_pair.xyz"
    pair.write_text(ION_PAIR)
    ids |= _submit(jobs, pair, "moved", "--name", "ion_pair")
    for name, geometry, options in (("water", WATER, ("--task", "ohess")),
                                    ("ammonia", AMMONIA, ("--task", "hess",
                                                          "--temperature", "350")),
                                    ("caffeine", CAFFEINE, ("--task", "hess"))):
        path = tmp / f"{name}.xyz"
        path.write_text(geometry)
        ids |= _submit(jobs, path, "thermo", "--name", name, *options)
    log = open(tmp / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "qforge.cli.main", "worker", "--until-idle",
         "--max-concurrent", "2", "--poll-interval", "0.2"],
        env=dict(os.environ, JOBS_DIR=str(jobs)), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        assert worker.wait(timeout=600) == 0, (tmp / "worker.log").read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        log.close()
    yield Campaign(jobs, ids)


def exported(campaign: Campaign, group: str) -> dict[str, Chem.Mol]:
    text = campaign.run("export", "--group", group, "--format", "sdf").stdout
    mols, messages = read_sdf(text)
    assert messages == []  # no warning: a 3D header, valences and charges as written
    assert all(m is not None for m in mols)
    return {m.GetProp("_Name"): m for m in mols}


@pytest.mark.parametrize(("group", "library"), [("smi", SMILES), ("sdf", SDF)])
def test_an_sdf_export_gives_back_the_molecules_submitted(
        campaign: Campaign, group: str, library: dict[str, str]) -> None:
    mols = exported(campaign, group)
    assert sorted(mols) == sorted(library)
    for name, smiles in library.items():
        mol = mols[name]
        assert mol.GetProp("status") == "COMPLETED" and mol.GetProp("geometry") == "optimised"
        source = "smiles" if group == "smi" else "sdf"
        assert mol.GetProp("topology") == f"from the input ({source})"
        assert mol.GetProp("topology_changed") == "false", name
        assert mol.GetConformer().Is3D()
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == canonical(smiles), name
        reference = Chem.MolFromSmiles(smiles)
        assert Chem.GetFormalCharge(mol) == Chem.GetFormalCharge(reference)
        assert int(mol.GetProp("charge")) == Chem.GetFormalCharge(reference)
        charged = sorted((a.GetSymbol(), a.GetFormalCharge()) for a in mol.GetAtoms()
                         if a.GetFormalCharge())
        assert charged == sorted((a.GetSymbol(), a.GetFormalCharge())
                                 for a in reference.GetAtoms() if a.GetFormalCharge())
        radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
        assert radicals == sum(a.GetNumRadicalElectrons() for a in reference.GetAtoms())
        assert radicals == int(mol.GetProp("uhf"))
        # the coordinates are the optimised ones of result.json (4 decimals in a molfile)
        result = json.loads((campaign.jobs / campaign.ids[name] / "result.json").read_text())
        final = result["result"]["geometry"]["geometry"]
        pos = mol.GetConformer().GetAtomPosition(0)
        assert (pos.x, pos.y, pos.z) == pytest.approx(tuple(final[0]), abs=6e-5)
    assert (campaign.jobs / campaign.ids["methyl"] / TOPOLOGY_FILE).exists()


def test_an_xyz_library_gets_its_bonds_perceived_at_export(campaign: Campaign) -> None:
    by_id = {m.GetProp("job_id"): m for m in exported(campaign, "xyz").values()}
    for name, smiles in XYZ.items():
        assert not (campaign.jobs / campaign.ids[name] / TOPOLOGY_FILE).exists()
        mol = by_id[campaign.ids[name]]
        assert mol.GetProp("topology") == \
            "perceived from the geometry (RDKit DetermineBonds, charge 0)"
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == canonical(smiles), name


def test_a_proton_that_moved_is_flagged(campaign: Campaign) -> None:
    job_id = campaign.ids["ion_pair"]
    rows = list(csv.DictReader(io.StringIO(
        campaign.run("export", "--group", "moved", "--format", "csv").stdout)))
    assert [r["topology_changed"] for r in rows] == ["true"]
    shown = json.loads(campaign.run("show", job_id, "--json").stdout)
    quality = shown["result"]["quality"]
    assert quality["topology_changed"] is True and quality["ok"] is False
    (note,) = [w for w in quality["warnings"] if w.startswith("the optimisation changed")]
    assert re.search(r"broken O1-H2; formed H2-O5", note), note
    text = campaign.run("show", job_id).stdout
    assert "structure changed" in text and "Bonds:     CHANGED in the optimisation" in text
    # the others of the campaign kept their bonds
    smi = list(csv.DictReader(io.StringIO(
        campaign.run("export", "--group", "smi", "--format", "csv").stdout)))
    assert {r["topology_changed"] for r in smi} == {"false"}


_PRINTED = {
    "zpe": r"::\s*zero point energy\s+(\S+)\s+Eh",
    "g_rrho": r"::\s*G\(RRHO\) contrib\.\s+(\S+)\s+Eh",
    "free_energy": r"::\s*total free energy\s+(\S+)\s+Eh",
    "enthalpy": r"\|\s*TOTAL ENTHALPY\s+(\S+)\s+Eh",
}


def printed(stdout: str) -> dict[str, float]:
    """What xtb printed, read here on its own (not through qforge's parser)."""
    values = {key: float(re.findall(pattern, stdout)[-1]) for key, pattern in _PRINTED.items()}
    head = stdout.rindex("H(0)-H(T)+PV")
    row = stdout[head:].splitlines()[2].split()
    values["temperature"], values["ts"] = float(row[0]), float(row[3])
    return values


@pytest.mark.parametrize(("name", "temperature"),
                         [("water", 298.15), ("ammonia", 350.0), ("caffeine", 298.15)])
def test_the_thermochemistry_is_what_xtb_printed(
        campaign: Campaign, tmp_path: Path, name: str, temperature: float) -> None:
    job_id = campaign.ids[name]
    spec = JobStore(campaign.jobs).read(job_id).spec
    assert spec.temperature == temperature
    expected = printed(direct_output(spec, tmp_path / name))
    assert expected["temperature"] == temperature
    result = json.loads((campaign.jobs / job_id / "result.json").read_text())["result"]
    for key, value in expected.items():
        assert result["thermochemistry"][key] == pytest.approx(value, abs=1e-8), key
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(
        campaign.run("export", "--group", "thermo", "--format", "csv").stdout))}
    columns = {"temperature_k": "temperature", "zpe_eh": "zpe", "h_eh": "enthalpy",
               "ts_eh": "ts", "g_rrho_eh": "g_rrho", "free_energy_eh": "free_energy"}
    for column, key in columns.items():
        assert float(rows[name][column]) == pytest.approx(expected[key], abs=1e-8), column
    text = campaign.run("show", job_id).stdout
    assert f"G:         {expected['free_energy']:.8f} Eh" in text


def test_the_qcschema_output_carries_thermochemistry_and_connectivity_and_validates(
        campaign: Campaign) -> None:
    water = json.loads(campaign.run("result", campaign.ids["water"], "--format",
                                    "qcschema").stdout)
    thermo = water["extras"]["qforge"]["thermochemistry"]
    assert set(thermo) == {"temperature_k", "zpe_eh", "enthalpy_eh", "ts_eh", "g_rrho_eh",
                           "free_energy_eh"}
    qcel.models.AtomicResult(**water)
    betaine = json.loads(campaign.run("result", campaign.ids["betaine"], "--format",
                                      "qcschema").stdout)
    kept = json.loads((campaign.jobs / campaign.ids["betaine"] / TOPOLOGY_FILE).read_text())
    assert [tuple(b) for b in betaine["molecule"]["connectivity"]] == \
        [(i, j, float(order)) for i, j, order in kept["bonds"]]
    validated = qcel.models.AtomicResult(**betaine)
    assert len(validated.molecule.connectivity) == len(kept["bonds"])
