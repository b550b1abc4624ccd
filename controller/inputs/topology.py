"""A molecule's bond table, kept from its SDF/MOL or SMILES input to its exports.

xtb reads only `input.xyz` (elements and coordinates). What a chemist drew besides —
which atoms are bonded, with which bond order, formal charges, radicals — is kept in
the job folder as ``topology.json``, atoms numbered as in ``input.xyz`` from 0:

    {"schema_version": 1, "source": "smiles",
     "bonds": [[0, 1, 1], [1, 2, 2], ...],      # atom, atom, order: 1, 2, 3 (Kekulé)
     "charges": [[5, 1], [7, -1]],              # atom, formal charge (non-zero only)
     "radicals": [[3, 1]]}                      # atom, radical electrons (non-zero only)

Aromatic rings are written in a Kekulé form (RDKit's), which every reader of MDL files
takes back to the same aromatic molecule; dative bonds have order 9 (MDL's code).

In memory a submission keeps the same thing packed (`pack`/`unpack`): 5 bytes a bond
(9 for molecules of more than 65,535 atoms) and 3 (5) per charged or radical atom, in
one bytes object, next to the 24 bytes an atom of the coordinates.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from qforge_runner.spec import JobSpec

SCHEMA_VERSION: Final = 1
ORDERS: Final = frozenset({1, 2, 3, 9})  # single, double, triple, dative
Source = Literal["smiles", "sdf", "qcschema", "perceived"]
_SOURCES: Final[tuple[Source, ...]] = ("smiles", "sdf", "qcschema", "perceived")
_HEAD: Final = struct.Struct("<BBII")  # source, wide indices?, charged atoms, radical atoms


class TopologyError(ValueError):
    """A bond table that does not fit its molecule."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Bonds (0-based atoms, order), formal charges and radical electrons of a molecule."""

    bonds: tuple[tuple[int, int, int], ...]
    charges: tuple[tuple[int, int], ...] = ()
    radicals: tuple[tuple[int, int], ...] = ()
    source: Source = "sdf"

    def check(self, natoms: int) -> Topology:
        """Itself, when every atom it names exists and every bond order is known."""
        for i, j, order in self.bonds:
            if not (0 <= i < natoms and 0 <= j < natoms) or i == j:
                raise TopologyError(f"bond {i}-{j} does not fit a molecule of {natoms} atoms")
            if order not in ORDERS:
                raise TopologyError(f"bond {i}-{j} has the unknown order {order}")
        for atom, _ in (*self.charges, *self.radicals):
            if not 0 <= atom < natoms:
                raise TopologyError(f"atom {atom} does not exist in a molecule of {natoms} atoms")
        return self

    @property
    def formal_charge(self) -> int:
        return sum(q for _, q in self.charges)

    @property
    def radical_electrons(self) -> int:
        return sum(n for _, n in self.radicals)

    # ------------------------------------------------------------ compact, in memory
    def pack(self) -> bytes:
        wide = any(max(i, j) > 0xFFFF for i, j, _ in self.bonds) or any(
            a > 0xFFFF for a, _ in (*self.charges, *self.radicals))
        idx = "I" if wide else "H"
        parts = [_HEAD.pack(_SOURCES.index(self.source), wide, len(self.charges),
                            len(self.radicals))]
        parts += [struct.pack(f"<{idx}b", a, q) for a, q in self.charges]
        parts += [struct.pack(f"<{idx}B", a, n) for a, n in self.radicals]
        bond = struct.Struct(f"<{idx}{idx}B")
        parts += [bond.pack(i, j, order) for i, j, order in self.bonds]
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes) -> Topology:
        source, wide, ncharges, nradicals = _HEAD.unpack_from(data)
        idx = "I" if wide else "H"
        pos = _HEAD.size
        atom = struct.Struct(f"<{idx}b")
        charges = []
        for _ in range(ncharges):
            charges.append(atom.unpack_from(data, pos))
            pos += atom.size
        radical = struct.Struct(f"<{idx}B")
        radicals = []
        for _ in range(nradicals):
            radicals.append(radical.unpack_from(data, pos))
            pos += radical.size
        bond = struct.Struct(f"<{idx}{idx}B")
        bonds = tuple(bond.iter_unpack(data[pos:]))
        return cls(bonds, tuple(charges), tuple(radicals), _SOURCES[source])

    # ------------------------------------------------------------ on disk
    def to_json(self) -> str:
        return TopologyFile(source=self.source, bonds=self.bonds, charges=self.charges,
                            radicals=self.radicals).model_dump_json() + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, natoms: int) -> Topology:
        """A topology.json read back; TopologyError when it is not one or does not fit."""
        try:
            data = TopologyFile.model_validate_json(text)
        except ValidationError as exc:
            raise TopologyError(f"not a qforge topology: {exc.errors()[0]['msg']}") from None
        return cls(data.bonds, data.charges, data.radicals, data.source).check(natoms)

    def qcschema_connectivity(self) -> list[tuple[int, int, float]]:
        """QCSchema's connectivity: (atom, atom, bond order); a dative bond counts 1."""
        return [(i, j, 1.0 if order == 9 else float(order)) for i, j, order in self.bonds]


class TopologyFile(BaseModel):
    """What ``topology.json`` holds (see the module's docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    source: Source
    bonds: tuple[tuple[int, int, int], ...]
    charges: tuple[tuple[int, int], ...] = ()
    radicals: tuple[tuple[int, int], ...] = ()


def kept_topology(topology: Topology | None, spec: JobSpec) -> bytes | None:
    """The packed topology a job keeps: None when there is none, or when --charge or
    --uhf changed the species so that the drawn charges and radicals no longer describe
    it (its export then perceives the bonds for the job's charge, and says so)."""
    if topology is None or topology.formal_charge != spec.charge \
            or topology.radical_electrons != spec.uhf:
        return None
    return topology.pack()


def packed_json(packed: bytes | None) -> str | None:
    """topology.json's text from the packed form (None stays None)."""
    return None if packed is None else Topology.unpack(packed).to_json()


def read_topology(path: Path, natoms: int) -> Topology | None:
    """A job's kept topology (its topology.json at `path`); None when it has none (XYZ
    input, an older job). TopologyError when the file is unreadable or does not fit."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TopologyError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    return Topology.from_json(text, natoms)


# ---------------------------------------------------------------- RDKit molecules
_RDKIT_ORDER: Final = {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "DATIVE": 9}


def from_rdkit(mol: Any, source: Source) -> Topology | None:
    """The topology of an RDKit molecule (hydrogens explicit, atoms in input.xyz's order),
    aromatic bonds in RDKit's Kekulé form; None when a bond is of a kind MDL files cannot
    hold (e.g. RDKit's "other" or hydrogen bonds): the export then perceives bonds."""
    from rdkit import Chem

    kekule = Chem.Mol(mol)
    try:
        Chem.Kekulize(kekule, clearAromaticFlags=True)
    except Exception:  # RDKit's KekulizeException; a sanitised molecule kekulizes
        return None
    bonds = []
    for bond in kekule.GetBonds():
        order = _RDKIT_ORDER.get(str(bond.GetBondType()))
        if order is None:
            return None
        bonds.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), order))
    atoms = list(kekule.GetAtoms())
    charges = tuple((a.GetIdx(), a.GetFormalCharge()) for a in atoms if a.GetFormalCharge())
    radicals = tuple((a.GetIdx(), a.GetNumRadicalElectrons()) for a in atoms
                     if a.GetNumRadicalElectrons())
    return Topology(tuple(bonds), charges, radicals, source)
