"""SMILES files: one SMILES a line, then optionally a name (the rest of the line).

Blank lines and lines starting with '#' are skipped, and so is a first line whose
first word is "smiles" (a column header). Each SMILES is embedded in 3D (chem.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from qforge.inputs.chem import Ensemble, read_smiles_ensemble
from qforge.inputs.conformers import ConformerOptions
from qforge.inputs.model import BadRecord, Limits, Raw, Where
from qforge_runner.errors import InputError


def read_smiles(lines: Iterator[tuple[int, str]], file: str, limits: Limits,
                conformers: ConformerOptions | None = None) -> Iterator[Raw | BadRecord]:
    index = 0
    for lineno, line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 1)
        if index == 0 and parts[0].lower() == "smiles":
            continue
        index += 1
        where = Where(file, index, lineno)
        title = parts[1].strip() if len(parts) > 1 else None
        try:
            ens = read_smiles_ensemble(parts[0], max_atoms=limits.max_atoms,
                                       conformers=conformers)
        except InputError as exc:
            yield BadRecord(where, str(exc))
            continue
        yield raw_of(ens, where, title, conformers)


def raw_of(ens: Ensemble, where: Where, title: str | None,
           conformers: ConformerOptions | None) -> Raw:
    """The reader's record of an ensemble (a single structure without `conformers`)."""
    return Raw(ens.molecules[0], where, title, ens.charge, ens.uhf, ens.topology, ens.smiles,
               ens.molecules if conformers is not None else (),
               conformers.count if conformers is not None else 0)
