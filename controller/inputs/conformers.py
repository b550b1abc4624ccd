"""Conformer ensembles: up to N 3D structures of one molecule (`qforge submit --conformers N`).

RDKit's ETKDGv3 embeds up to N conformers with a fixed seed (chem.EMBED_SEED: the same
molecule gives the same ensemble every time), pruned while embedding by heavy-atom RMSD
(`rmsd`, Å, after alignment); each is cleaned with MMFF94 (when MMFF94 has parameters for
every atom) and pruned once more, since the clean-up can bring two of them to the same
minimum. What is left is ordered by MMFF94 energy (lowest first; embedding order when
there is no MMFF94). Rigid molecules give fewer than N: benzene and water give one.

Every conformer keeps the molecule's atom order, so one bond table (topology.py) holds
for all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from qforge_runner.errors import InputError

MAX_CONFORMERS: Final = 1000
DEFAULT_RMSD: Final = 0.5  # Å, heavy atoms
_MMFF: Final = "MMFF94"


@dataclass(frozen=True)
class ConformerOptions:
    """How many conformers to ask for, and the heavy-atom RMSD below which two count as one."""

    count: int = 1
    rmsd: float = DEFAULT_RMSD

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_CONFORMERS:
            raise InputError(f"--conformers must be 1 to {MAX_CONFORMERS}, not {self.count}")
        if not 0.0 <= self.rmsd <= 10.0:
            raise InputError(f"--conformer-rmsd must be 0 to 10 Å, not {self.rmsd}")


def conformer_name(name: str, index: int, count: int) -> str:
    """`<name>.c03`: the 1-based conformer number, zero-padded to the width of `count`
    (at least 2 digits); the name shortened so that the whole stays ≤ 63 characters."""
    from qforge.inputs.names import MAX_NAME, sanitize_name

    suffix = f".c{index:0{max(2, len(str(count)))}d}"
    return sanitize_name(name[: MAX_NAME - len(suffix)]) + suffix


def molecule_key(smiles: str | None, charge: int, uhf: int, fallback: bytes = b"") -> str:
    """The key every job of one molecule carries (JobRecord.molecule): from its canonical
    isomeric SMILES, charge and multiplicity when it has a SMILES (RDKit read it), else
    from `fallback` (the element symbols and coordinates of an XYZ or QCSchema record,
    which is a molecule of its own). 'm' and 20 hex digits of a sha256."""
    digest = hashlib.sha256(f"charge={charge};multiplicity={uhf + 1};".encode())
    if smiles:
        digest.update(f"smiles={smiles}".encode())
    else:
        digest.update(b"input=" + fallback)
    return "m" + digest.hexdigest()[:20]


def canonical_smiles(mol: Any) -> str:
    """The canonical isomeric SMILES of an RDKit molecule (hydrogens implicit)."""
    from rdkit import Chem

    return str(Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=True))


def _heavy_rmsd(heavy: Any, a: int, b: int) -> float:
    """Heavy-atom RMSD of conformers a and b after alignment; 0 for fewer than three
    heavy atoms (no heavy-atom conformation to tell apart)."""
    from rdkit.Chem import rdMolAlign

    if heavy.GetNumAtoms() < 3:
        return 0.0
    return float(rdMolAlign.AlignMol(heavy, heavy, prbCid=b, refCid=a))


def embed_conformers(mol: Any, options: ConformerOptions, what: str, seed: int) -> list[int]:
    """Embeds conformers into `mol` (hydrogens explicit; its own conformers replaced) and
    returns the ids of those kept, lowest MMFF94 energy first. InputError when none embeds."""
    from rdkit import Chem
    from rdkit.Chem import AllChem as _allchem

    AllChem: Any = _allchem
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.pruneRmsThresh = options.rmsd
    params.onlyHeavyAtomsForRMS = True
    try:
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=options.count, params=params))
    except Exception as exc:  # RDKit's invariant violations on odd valences
        raise InputError(f"RDKit could not embed conformers of {what}: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    if not ids:
        raise InputError(f"RDKit could not embed {what} in 3D (ETKDGv3, seed {seed}): "
                         "no 3D structure satisfies its distance bounds")
    energies = {cid: 0.0 for cid in ids}
    if AllChem.MMFFHasAllMoleculeParams(mol):
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, mmffVariant=_MMFF, maxIters=2000)
        energies = {cid: float(e) for cid, (_, e) in zip(ids, results, strict=True)}
    ordered = sorted(ids, key=lambda cid: (energies[cid], cid))
    heavy = Chem.RemoveHs(mol) if any(a.GetAtomicNum() > 1 for a in mol.GetAtoms()) else mol
    kept: list[int] = []
    for cid in ordered:
        if all(_heavy_rmsd(heavy, k, cid) >= options.rmsd for k in kept):
            kept.append(cid)
    return kept
