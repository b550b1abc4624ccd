"""SDF / MOL: records separated by '$$$$' lines, each read by RDKit (hydrogens kept).

Records are cut from the stream here (so each error names its line) and the atom
count of the counts line (V2000, or V3000's COUNTS) is checked against MAX_ATOMS
before the record is kept in memory. The title (first line) names the molecule.
"""

from __future__ import annotations

from collections.abc import Iterator

from qforge.inputs.chem import read_molblock_ensemble
from qforge.inputs.conformers import ConformerOptions
from qforge.inputs.model import BadRecord, Limits, Raw, Where
from qforge.inputs.smiles import raw_of
from qforge_runner.errors import InputError

_END = "$$$$"


def _declared_atoms(lines: list[str]) -> int | None:
    """Atoms the record's counts line announces, when it can be read."""
    if len(lines) >= 4 and "V2000" in lines[3]:
        head = lines[3][:3].strip()
        return int(head) if head.isdecimal() else None
    for line in lines[3:8]:
        if line.startswith("M  V30 COUNTS"):
            parts = line.split()
            return int(parts[3]) if len(parts) > 3 and parts[3].isdecimal() else None
    return None


def read_sdf(lines: Iterator[tuple[int, str]], file: str, limits: Limits,
             conformers: ConformerOptions | None = None) -> Iterator[Raw | BadRecord]:
    index = 0
    block: list[str] = []
    start = 0
    skipping = False
    for lineno, line in lines:
        if not block and not skipping:
            start = lineno
        if line.rstrip() == _END:
            if block and not skipping:
                index += 1
                yield _record(block, Where(file, index, start), conformers)
            block, skipping = [], False
            continue
        if skipping:
            continue
        block.append(line)
        if len(block) == 8 or (len(block) == 4 and "V2000" in line):
            natoms = _declared_atoms(block)
            if natoms is not None and natoms > limits.max_atoms:
                index += 1
                yield BadRecord(Where(file, index, start),
                                f"{natoms} atoms, more than MAX_ATOMS={limits.max_atoms}")
                block, skipping = [], True
    if any(line.strip() for line in block):
        index += 1
        yield _record(block, Where(file, index, start), conformers)


def _record(block: list[str], where: Where, conformers: ConformerOptions | None
            ) -> Raw | BadRecord:
    try:
        ens = read_molblock_ensemble("\n".join(block) + "\n", conformers)
    except InputError as exc:
        return BadRecord(where, str(exc))
    title = block[0].strip() if block else None
    return raw_of(ens, where, title or None, conformers)
