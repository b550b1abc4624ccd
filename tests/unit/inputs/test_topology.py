"""The bond table kept from SDF/MOL and SMILES inputs: read, packed, written, read back."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rdkit import Chem

from qforge.inputs.chem import read_molblock_record, read_smiles_record
from qforge.inputs.topology import Topology, TopologyError, kept_topology
from qforge.molfile import perceive, sdf_record
from qforge.service.submission import Pending
from qforge.store.layout import TOPOLOGY_FILE
from qforge_runner.molecule import Molecule
from qforge_runner.spec import JobSpec
from tests.rdkit_reading import read_sdf
from tests.unit.inputs.test_submit_cli import Run, run  # noqa: F401 - the fixture

FIXTURES = Path(__file__).parent / "fixtures"
# aromatic rings, double and triple bonds, a cation, an anion, zwitterions, nitro groups,
# radicals (a doublet, a triplet carbene), a dative-free metal-free set RDKit round-trips
LIBRARY = ("CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "C[N+](C)(C)CCOC(C)=O",
           "C[N+](C)(C)CC(=O)[O-]", "O=[N+]([O-])c1ccccc1", "C[N+](=O)[O-]", "[CH3]", "CC#N",
           "C=CC=O", "[NH4+]", "CC(=O)[O-]", "[NH3+]CC(=O)[O-]", "c1ccncc1", "[O]O",
           "C[C]C", "N#CC#N", "c1ccc2[nH]ccc2c1", "O=C1C=CC(=O)C=C1")


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def read_back(record: str) -> tuple[Chem.Mol, list[str]]:
    """The record as RDKit reads it, and what RDKit logged meanwhile (warnings too)."""
    (mol,), messages = read_sdf(record)
    assert mol is not None, messages
    return mol, messages


def test_the_read_back_sees_rdkits_warnings() -> None:
    """The check below is not vacuous: a record tagged 2D with 3D coordinates warns."""
    molecule, _, _, topology = read_smiles_record("CCO", max_atoms=50)
    record = sdf_record(molecule, "ethanol", topology, []).replace("3D\n", "2D\n", 1)
    _, messages = read_back(record)
    assert any("2D" in m for m in messages), messages


@pytest.mark.parametrize("smiles", LIBRARY)
def test_a_smiles_comes_back_from_its_sdf_record_as_the_same_molecule(smiles: str) -> None:
    molecule, charge, uhf, topology = read_smiles_record(smiles, max_atoms=200)
    assert topology is not None and topology.source == "smiles"
    assert (topology.formal_charge, topology.radical_electrons) == (charge, uhf)
    back, messages = read_back(sdf_record(molecule, smiles, topology, [("energy_eh", "-1.5")]))
    assert messages == []  # no warning: 3D, valences, charges all as written
    assert back.GetConformer().Is3D()
    assert Chem.MolToSmiles(Chem.RemoveHs(back)) == canonical(smiles)
    assert Chem.GetFormalCharge(back) == charge
    assert sum(a.GetNumRadicalElectrons() for a in back.GetAtoms()) == uhf
    assert back.GetProp("energy_eh") == "-1.5"


@pytest.mark.parametrize("smiles", LIBRARY)
def test_bonds_perceived_from_the_geometry_give_the_same_molecule(smiles: str) -> None:
    molecule, charge, uhf, _ = read_smiles_record(smiles, max_atoms=200)
    topology, how = perceive(molecule, charge, uhf)
    assert how == f"perceived from the geometry (RDKit DetermineBonds, charge {charge})"
    assert topology is not None and topology.source == "perceived"
    back, messages = read_back(sdf_record(molecule, smiles, topology, []))
    assert messages == []
    assert Chem.MolToSmiles(Chem.RemoveHs(back)) == canonical(smiles)


def test_when_bond_orders_cannot_be_perceived_the_record_says_so() -> None:
    molecule, _, _, _ = read_smiles_record("CC(=O)O", max_atoms=50)
    topology, how = perceive(molecule, charge=1, uhf=0)  # no closed-shell cation fits
    assert how.startswith("connectivity only, all bonds single: bond orders not determined (")
    assert topology is not None and {order for _, _, order in topology.bonds} == {1}
    assert len(topology.bonds) == 7


def test_an_sdf_record_keeps_its_bonds_charges_and_radicals() -> None:
    text = (FIXTURES / "library.sdf").read_text()
    blocks = [b for b in text.split("$$$$\n") if b.strip()]
    acetate = read_molblock_record(blocks[0])[3]
    assert acetate is not None and acetate.source == "sdf"
    assert acetate.bonds == ((0, 1, 1), (1, 2, 2), (1, 3, 1), (0, 4, 1), (0, 5, 1), (0, 6, 1))
    assert acetate.charges == ((3, -1),)
    methyl = read_molblock_record(blocks[1])[3]
    assert methyl is not None and methyl.radicals == ((0, 1),)


def test_the_packed_form_is_5_bytes_a_bond_and_unpacks_to_the_same() -> None:
    _, _, _, topology = read_smiles_record("Cn1cnc2c1c(=O)n(C)c(=O)n2C", max_atoms=100)
    assert topology is not None
    packed = topology.pack()
    assert len(packed) == 10 + 5 * len(topology.bonds)
    assert Topology.unpack(packed) == topology
    nitro = read_smiles_record("C[N+](=O)[O-]", max_atoms=100)[3]
    assert nitro is not None and Topology.unpack(nitro.pack()) == nitro
    wide = Topology(((0, 70000, 2),), ((70000, -1),), ((3, 2),), "sdf")
    assert Topology.unpack(wide.pack()) == wide


def test_a_pending_molecule_with_its_topology_stays_near_its_memory_budget() -> None:
    """Caffeine (24 atoms, 25 bonds): the topology adds ~8 bytes an atom to the 24 of
    the coordinates, in one bytes object."""
    molecule, charge, uhf, topology = read_smiles_record("Cn1cnc2c1c(=O)n(C)c(=O)n2C",
                                                         max_atoms=100)
    spec = JobSpec(molecule=molecule, charge=charge, uhf=uhf)
    pending = Pending.of(spec, {}, topology)
    assert pending.topology is not None
    per_atom = sys.getsizeof(pending.topology) / molecule.natoms
    assert per_atom < 8
    assert sys.getsizeof(pending.coords) / molecule.natoms < 24 + 4


def test_a_charge_given_on_the_command_line_drops_the_drawn_topology() -> None:
    molecule, _, _, topology = read_smiles_record("CC(=O)[O-]", max_atoms=100)
    assert kept_topology(topology, JobSpec(molecule=molecule, charge=-1)) is not None
    assert kept_topology(topology, JobSpec(molecule=molecule, charge=1)) is None
    assert kept_topology(None, JobSpec(molecule=molecule, charge=-1)) is None


@pytest.mark.parametrize(("text", "message"), [
    ('{"schema_version": 1, "source": "sdf", "bonds": [[0, 5, 1]]}', "does not fit"),
    ('{"schema_version": 1, "source": "sdf", "bonds": [[0, 1, 4]]}', "unknown order 4"),
    ('{"schema_version": 1, "source": "sdf", "bonds": [], "charges": [[9, 1]]}',
     "atom 9 does not exist"),
    ('{"schema_version": 2, "source": "sdf", "bonds": []}', "not a qforge topology"),
    ('{"source": "sdf", "bonds": [], "extra": 1}', "not a qforge topology"),
    ("not json", "not a qforge topology"),
])
def test_a_broken_topology_file_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        Topology.from_json(text, natoms=3)


def test_a_big_molecule_is_written_as_v3000() -> None:
    n = 1002
    molecule = Molecule(symbols=("C",) * n,
                        geometry=tuple((1.5 * i, 0.0, 0.0) for i in range(n)))
    bonds = tuple((i, i + 1, 1) for i in range(n - 1))
    topology = Topology(bonds, ((0, -1),), ((n - 1, 1),), "sdf")
    record = sdf_record(molecule, "chain", topology, [])
    assert "V3000" in record.splitlines()[3]
    mol = Chem.MolFromMolBlock(record.split("$$$$")[0], removeHs=False, sanitize=False)
    assert mol.GetNumAtoms() == n and mol.GetNumBonds() == n - 1
    assert mol.GetAtomWithIdx(0).GetFormalCharge() == -1
    assert mol.GetAtomWithIdx(n - 1).GetNumRadicalElectrons() == 1


def test_submit_keeps_the_topology_of_smiles_and_sdf_and_none_for_xyz(
        run: Run, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    smi = tmp_path / "lib.smi"
    smi.write_text("O=[N+]([O-])c1ccccc1 nitrobenzene\n[CH3] methyl\n")
    code, _, err = run(str(smi), str(FIXTURES / "library.sdf"), "--json")
    assert code == 0, err
    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    assert run(str(xyz), "--json")[0] == 0
    kept = {r.spec.name: run.jobs / r.job_id / TOPOLOGY_FILE for r in run.records()}
    assert not kept["water"].exists()
    nitro = json.loads(kept["nitrobenzene"].read_text())
    assert nitro["source"] == "smiles" and sorted(q for _, q in nitro["charges"]) == [-1, 1]
    assert json.loads(kept["methyl"].read_text())["radicals"] == [[0, 1]]
    assert json.loads(kept["acetate_anion"].read_text())["charges"] == [[3, -1]]


def test_a_qcschema_connectivity_is_kept_when_it_can_be_written_back(
        run: Run, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    def molecule(name: str, **extra: object) -> dict[str, object]:
        co = 2.28 + 0.01 * len(name)  # distinct inputs: none is a duplicate of another
        return {"schema_name": "qcschema_molecule", "schema_version": 2, "name": name,
                "symbols": ["C", "O", "H", "H"],
                "geometry": [0.0, 0.0, 0.0, 0.0, 0.0, co, 0.0, 1.77, -1.02, 0.0, -1.77, -1.02],
                **extra}
    bonds = [[0, 1, 2], [0, 2, 1], [0, 3, 1]]
    data = [molecule("formaldehyde", connectivity=bonds),
            molecule("aromatic", connectivity=[[0, 1, 1.5], [0, 2, 1], [0, 3, 1]]),
            molecule("plain")]
    path = tmp_path / "mols.json"
    path.write_text(json.dumps(data))
    code, _, err = run(str(path), "--json")
    assert code == 0, err
    kept = {r.spec.name: run.jobs / r.job_id / TOPOLOGY_FILE for r in run.records()}
    assert json.loads(kept["formaldehyde"].read_text())["bonds"] == bonds
    assert json.loads(kept["formaldehyde"].read_text())["source"] == "qcschema"
    assert not kept["aromatic"].exists() and not kept["plain"].exists()


def _record(job_id: str, symbols: list[str], geometry: list[list[float]], *,
            charge: int = 0, uhf: int = 0) -> dict[str, object]:
    return {"job_id": job_id, "status": "FAILED", "group": "g", "result": None,
            "error": {"type": "xtb_error", "message": "on purpose"},
            "spec": {"name": job_id, "charge": charge, "uhf": uhf, "method": "gfn2",
                     "task": "opt", "molecule": {"symbols": symbols, "geometry": geometry}}}


def test_the_sdf_export_says_where_each_records_bonds_came_from(tmp_path: Path) -> None:
    from qforge.service.export import write_sdf

    carbon = tmp_path / "carbon"  # a carbon atom with 4 radical electrons: no MDL code
    carbon.mkdir()
    (carbon / TOPOLOGY_FILE).write_text(
        Topology((), (), ((0, 4),), "smiles").to_json())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / TOPOLOGY_FILE).write_text('{"schema_version": 1, "source": "sdf", '
                                        '"bonds": [[0, 9, 1]]}')
    water = [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]]
    items = [(_record("carbon", ["C"], [[0.0, 0.0, 0.0]], uhf=4), carbon),
             (_record("broken", ["O", "H", "H"], water), broken)]
    out = io.StringIO()
    assert write_sdf(items, out) == 2
    records = out.getvalue().split("$$$$\n")
    mols = [read_back(r + "$$$$\n")[0] for r in records[:2]]
    assert mols[0].GetProp("topology") == ("none: an atom with more than 2 radical electrons "
                                          "cannot be written in an MDL molfile")
    assert mols[1].GetProp("topology") == (
        "perceived from the geometry (RDKit DetermineBonds, charge 0); topology.json "
        "unusable: bond 0-9 does not fit a molecule of 3 atoms")
    assert mols[1].GetNumBonds() == 2
