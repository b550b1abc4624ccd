"""XYZ: one frame or many concatenated (a trajectory, a conformer set).

Each frame is cut from the stream by its atom count and read by the runner's own
`parse_xyz`; blank lines between frames are allowed. A frame over MAX_ATOMS is
skipped without being held in memory. A line where an atom count should be and is not
ends the file's reading (the frames after it cannot be found).
"""

from __future__ import annotations

from collections.abc import Iterator

from qforge.inputs.model import BadRecord, Limits, Raw, Where
from qforge_runner.errors import InputError
from qforge_runner.molecule import parse_xyz


def read_xyz(lines: Iterator[tuple[int, str]], file: str, limits: Limits
             ) -> Iterator[Raw | BadRecord]:
    index = 0
    for lineno, line in lines:
        if not line.strip():
            continue
        index += 1
        where = Where(file, index, lineno)
        head = line.split()
        if len(head) != 1 or not head[0].isdecimal():
            yield BadRecord(where, f"line {lineno}: expected the number of atoms of a frame, "
                                   f"got {line.strip()[:60]!r}")
            return
        natoms = int(head[0])
        if natoms > limits.max_atoms:
            yield BadRecord(where, f"{natoms} atoms, more than MAX_ATOMS={limits.max_atoms}")
            for _ in range(natoms + 1):
                if next(lines, None) is None:
                    break
            continue
        frame = [line]
        for _ in range(natoms + 1):
            nxt = next(lines, None)
            if nxt is None:
                break
            frame.append(nxt[1])
        try:
            molecule = parse_xyz("\n".join(frame), first_line=lineno)
        except InputError as exc:
            yield BadRecord(where, str(exc))
            continue
        yield Raw(molecule, where)
