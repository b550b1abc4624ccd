"""RDKit at the edge: SMILES and MOL blocks to the runner's `Molecule`.

RDKit is imported on first use (the ``cli`` extra; the runner image has none), and its
log is captured so that a failure becomes one line about the record instead of
RDKit's own lines on stderr.

SMILES → 3D: hydrogens added, ETKDGv3 embedding with a fixed seed (EMBED_SEED, so the
same SMILES gives the same geometry every time), then an MMFF94 clean-up
(MMFF_MAX_ITERS steps at most; skipped when MMFF94 has no parameters for an atom, e.g.
most metals: the ETKDG geometry is kept and xtb optimises it anyway). Charge = the sum
of the formal charges; unpaired electrons = RDKit's radical electrons.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from qforge.inputs.conformers import ConformerOptions, canonical_smiles, embed_conformers
from qforge.inputs.topology import Source, Topology, from_rdkit
from qforge_runner.errors import InputError
from qforge_runner.molecule import Molecule

EMBED_SEED: Final = 20261201
MMFF_MAX_ITERS: Final = 2000
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
_FOR_INPUT = re.compile(r"\s+for input: '.*'$")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(_STAMP.sub("", record.getMessage()).strip())


_capture = _Capture()


def _rdkit() -> Any:
    """The RDKit modules (Chem, AllChem, Descriptors), with RDKit's log captured."""
    try:
        from rdkit import Chem, rdBase
        from rdkit.Chem import AllChem, Descriptors
    except ImportError:
        raise InputError(
            "reading SDF/MOL and SMILES needs RDKit, which is not installed here: "
            "pip install 'qforge[cli]'") from None
    if _capture not in logging.getLogger("rdkit").handlers:
        rdBase.LogToPythonLogger()
        logger = logging.getLogger("rdkit")
        logger.handlers = [_capture]
        logger.propagate = False
    return Chem, AllChem, Descriptors


@contextlib.contextmanager
def _messages() -> Iterator[list[str]]:
    _capture.messages = []
    yield _capture.messages


def _reason(messages: list[str], fallback: str) -> str:
    """RDKit's first error line, without its time stamp and the echoed input."""
    for text in messages:
        if text:
            text = text.removeprefix("SMILES Parse Error: ")
            return " ".join(_FOR_INPUT.sub("", text).split())
    return fallback


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _electrons(mol: Any) -> tuple[int, int]:
    chem, _, descriptors = _rdkit()
    return int(chem.GetFormalCharge(mol)), int(descriptors.NumRadicalElectrons(mol))


def _to_molecule(mol: Any, comment: str, conformer: int = -1) -> Molecule:
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    conf = mol.GetConformer(conformer)
    geometry = [(float(p.x), float(p.y), float(p.z))
                for p in (conf.GetAtomPosition(i) for i in range(mol.GetNumAtoms()))]
    try:
        return Molecule(symbols=tuple(symbols), geometry=tuple(geometry), comment=comment)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None


def embed(mol: Any, what: str) -> None:
    """3D coordinates for `mol` (hydrogens already explicit): ETKDGv3 with EMBED_SEED,
    then MMFF94 when it has parameters. InputError when the embedding fails."""
    _, allchem, _ = _rdkit()
    params = allchem.ETKDGv3()
    params.randomSeed = EMBED_SEED
    with _messages() as messages:
        try:
            status = allchem.EmbedMolecule(mol, params)
        except Exception as exc:  # e.g. RDKit's invariant violations on odd valences
            raise InputError(f"RDKit could not embed {what} in 3D: {_first_line(exc)}"
                             ) from None
    if status != 0:
        why = _reason(messages, "no 3D structure satisfies its distance bounds")
        raise InputError(f"RDKit could not embed {what} in 3D (ETKDGv3, seed {EMBED_SEED}): "
                         f"{why}")
    if allchem.MMFFHasAllMoleculeParams(mol):
        allchem.MMFFOptimizeMolecule(mol, mmffVariant="MMFF94", maxIters=MMFF_MAX_ITERS)


def smiles_to_molecule(smiles: str, *, max_atoms: int) -> tuple[Molecule, int, int]:
    """A SMILES as an embedded 3D molecule with its charge and unpaired electrons."""
    molecule, charge, uhf, _ = read_smiles_record(smiles, max_atoms=max_atoms)
    return molecule, charge, uhf


def read_smiles_record(smiles: str, *, max_atoms: int
                       ) -> tuple[Molecule, int, int, Topology | None]:
    """`smiles_to_molecule`, and the molecule's bond table (topology.py)."""
    ens = read_smiles_ensemble(smiles, max_atoms=max_atoms)
    return ens.molecules[0], ens.charge, ens.uhf, ens.topology


@dataclass(frozen=True)
class Ensemble:
    """A record read: one structure, or its conformers (conformers.py), each with the
    same atoms in the same order; its electrons, bond table and canonical SMILES."""

    molecules: tuple[Molecule, ...]
    charge: int
    uhf: int
    topology: Topology | None
    smiles: str | None  # canonical isomeric SMILES (None when RDKit cannot write one)


def _ensemble(mol: Any, comment: str, what: str, source: Source,
              conformers: ConformerOptions | None, *, embedded: bool) -> Ensemble:
    """From a molecule with explicit hydrogens: embedded (one conformer, as ever) unless
    `embedded`, or its conformers when asked for."""
    if conformers is not None:
        with _messages():
            ids = embed_conformers(mol, conformers, what, EMBED_SEED)
        molecules = tuple(_to_molecule(mol, comment, cid) for cid in ids)
    else:
        if not embedded:
            embed(mol, what)
        molecules = (_to_molecule(mol, comment),)
    charge, uhf = _electrons(mol)
    try:
        smiles: str | None = canonical_smiles(mol)
    except Exception:  # RDKit cannot write every molecule it reads as SMILES
        smiles = None
    return Ensemble(molecules, charge, uhf, from_rdkit(mol, source), smiles)


def read_smiles_ensemble(smiles: str, *, max_atoms: int,
                         conformers: ConformerOptions | None = None) -> Ensemble:
    """A SMILES embedded in 3D: once (ETKDGv3, MMFF94), or as an ensemble of conformers."""
    chem, _, _ = _rdkit()
    with _messages() as messages:
        try:
            parsed = chem.MolFromSmiles(smiles)
        except Exception as exc:  # RDKit raises odd types on odd bytes (SystemError)
            raise InputError(f"cannot parse SMILES {smiles!r}: {_first_line(exc)}") from None
    if parsed is None:
        raise InputError(f"cannot parse SMILES {smiles!r}: {_reason(messages, 'invalid')}")
    mol = chem.AddHs(parsed)
    if mol.GetNumAtoms() > max_atoms:
        raise InputError(f"SMILES {smiles!r} has {mol.GetNumAtoms()} atoms with hydrogens, "
                         f"more than MAX_ATOMS={max_atoms}")
    return _ensemble(mol, smiles, f"SMILES {smiles!r}", "smiles", conformers, embedded=False)


def molblock_to_molecule(block: str) -> tuple[Molecule, int, int]:
    """An SDF/MOL record (hydrogens kept) with its charge and unpaired electrons."""
    molecule, charge, uhf, _ = read_molblock_record(block)
    return molecule, charge, uhf


def read_molblock_record(block: str) -> tuple[Molecule, int, int, Topology | None]:
    """An SDF/MOL record (hydrogens kept) with its charge, unpaired electrons and bond
    table (topology.py)."""
    ens = read_molblock_ensemble(block)
    return ens.molecules[0], ens.charge, ens.uhf, ens.topology


def read_molblock_ensemble(block: str, conformers: ConformerOptions | None = None
                           ) -> Ensemble:
    """An SDF/MOL record (hydrogens kept).

    3D records keep their coordinates; implicit hydrogens, if any, are added at
    positions RDKit derives from their neighbours. A 2D (or 0D) record is embedded in
    3D like a SMILES. With `conformers`, the record's bond table is embedded afresh as
    an ensemble (its own coordinates, if any, are not one of them).
    """
    chem, _, _ = _rdkit()
    with _messages() as messages:
        try:
            mol = chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        except Exception as exc:  # RDKit raises odd types on odd bytes (SystemError)
            raise InputError(f"RDKit cannot read the record: {_first_line(exc)}") from None
    if mol is None:
        raise InputError(f"RDKit cannot read the record: {_reason(messages, 'invalid MOL block')}")
    if mol.GetNumAtoms() == 0:
        raise InputError("the record has no atoms")
    title = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    is3d = bool(mol.GetNumConformers() and mol.GetConformer().Is3D())
    if is3d:
        if any(atom.GetNumImplicitHs() for atom in mol.GetAtoms()):
            mol = chem.AddHs(mol, addCoords=True)
    else:
        mol = chem.AddHs(mol)
    return _ensemble(mol, title, "the 2D record" if not is3d else "the record", "sdf",
                     conformers, embedded=is3d)
