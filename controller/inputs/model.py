"""What a reader yields: a molecule with its name and electrons, or a bad record."""

from __future__ import annotations

from dataclasses import dataclass

from qforge.inputs.topology import Topology
from qforge_runner.molecule import Molecule


@dataclass(frozen=True)
class Limits:
    """Refuse inputs bigger than these (Settings.max_input_bytes, Settings.max_atoms)."""

    max_input_bytes: int = 256 * 1024**2
    max_atoms: int = 10_000


@dataclass(frozen=True)
class Where:
    """A record's place: its file (as the user named it), first line, number in the file."""

    file: str
    index: int  # 1-based number of the molecule in its file
    line: int | None = None  # 1-based line where the record starts, when known

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{at}: molecule {self.index}"


@dataclass(frozen=True)
class ReadMolecule:
    """One molecule read from a file.

    `name` is already a valid job name (sanitized). `charge` and `uhf` are what the
    record says (SMILES, SDF, QCSchema); None when the format carries none (XYZ).
    `topology`: the bond table of an SDF/MOL or SMILES record (topology.py).
    `smiles`: its canonical isomeric SMILES (RDKit's; None for XYZ and QCSchema), which
    names the molecule (conformers.molecule_key). `conformer`: (its number, how many
    were asked for) when it is one conformer of an ensemble; `name` then ends `.cNN`.
    """

    molecule: Molecule
    name: str
    where: Where
    charge: int | None = None
    uhf: int | None = None
    topology: Topology | None = None
    smiles: str | None = None
    conformer: tuple[int, int] | None = None


@dataclass(frozen=True)
class BadRecord:
    """A record that cannot be submitted; `str()` is the one line shown to the user."""

    where: Where
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"



@dataclass(frozen=True)
class Raw:
    """A record as a format reader yields it: its own title (if any), not yet named;
    with an ensemble asked for, `conformers` holds every conformer (`molecule` is the
    first) and `asked` how many were asked for."""

    molecule: Molecule
    where: Where
    title: str | None = None
    charge: int | None = None
    uhf: int | None = None
    topology: Topology | None = None
    smiles: str | None = None
    conformers: tuple[Molecule, ...] = ()
    asked: int = 0
