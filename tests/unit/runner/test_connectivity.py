"""The connectivity criterion of the runner (no RDKit there) gives RDKit's bonds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdDetermineBonds

from qforge_runner.connectivity import connectivity, describe_changes
from qforge_runner.harness import collect_result
from qforge_runner.molecule import Molecule
from tests.unit.runner.helpers import recorded, water_spec

SMILES = ("CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "C[N+](C)(C)CCOC(C)=O",
          "[NH3+]CC(=O)[O-]", "O=[N+]([O-])c1ccccc1", "C#CC=C", "ClC(Br)I", "FS(F)(F)(F)(F)F",
          "[CH3]", "OB(O)c1ccc(P(=O)(O)O)cc1", "C[Si](C)(C)[Se]C")


def _rdkit_bonds(mol: Chem.Mol) -> frozenset[tuple[int, int]]:
    bare = Chem.RWMol(mol)
    for bond in list(bare.GetBonds()):
        bare.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    rdDetermineBonds.DetermineConnectivity(bare)
    pairs = (sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in bare.GetBonds())
    return frozenset((i, j) for i, j in pairs)


@pytest.mark.parametrize("smiles", SMILES)
def test_the_bonds_are_rdkits(smiles: str) -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    for seed in (1, 2, 3):
        assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
        conf = mol.GetConformer()
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        geometry = [tuple(conf.GetAtomPosition(i)) for i in range(mol.GetNumAtoms())]
        assert connectivity(symbols, geometry) == _rdkit_bonds(mol), (smiles, seed)


def test_a_moved_proton_is_described() -> None:
    before = frozenset({(0, 1), (0, 2), (0, 3)})
    after = frozenset({(0, 1), (0, 2), (3, 4)})
    assert describe_changes("OHHHO", before, after) == "broken O1-H4; formed H4-O5"


def test_an_optimisation_that_moved_a_proton_is_flagged(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    # the same final water, but the "input" had its first H on another atom's side
    far = Molecule(symbols=("O", "H", "H"),
                   geometry=((0.0, 0.0, 0.1173), (0.0, 2.5, -0.4692), (0.0, -0.7572, -0.4692)))
    spec = water_spec().model_copy(update={"molecule": far})
    result = collect_result(run.scratch(tmp_path), run.stdout, spec, 1.0)
    assert result.topology_changed is True
    assert result.quality.topology_changed is True
    assert result.quality.ok is False
    assert result.quality.warnings == ("the optimisation changed the bonds (formed O1-H2)",)
    assert result.summary().topology_changed is True


def test_an_unchanged_structure_is_not_flagged(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(), 1.0)
    assert result.topology_changed is False
    assert result.quality.topology_changed is False


def test_distorted_geometries_give_rdkits_bonds_too() -> None:
    """Atoms shaken by up to 0.5 Å: bonds near the threshold, hydrogens between atoms."""
    rng = random.Random(20261207)
    for smiles in SMILES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
        conf = mol.GetConformer()
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        for _ in range(5):
            geometry = [tuple(c + rng.uniform(-0.5, 0.5) for c in conf.GetAtomPosition(i))
                        for i in range(mol.GetNumAtoms())]
            xyz = f"{len(symbols)}\n\n" + "".join(
                f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in zip(symbols, geometry,
                                                                      strict=True))
            shaken = Chem.MolFromXYZBlock(xyz)
            rdDetermineBonds.DetermineConnectivity(shaken)
            theirs = frozenset(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx())))
                               for b in shaken.GetBonds())
            ours = connectivity(symbols, [tuple(float(f"{c:.6f}") for c in p) for p in geometry])
            assert ours == theirs, smiles
