"""A molecule as qforge runs it, and the two input formats it is read from.

XYZ (Ångström, the format xtb reads) and QCSchema molecule JSON (bohr). Every problem
is an `InputError` with one line that says what is wrong and where.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from qforge_runner.elements import ATOMIC_NUMBER, normalise_symbol
from qforge_runner.errors import InputError

# CODATA 2014, the value qcelemental (and so QCSchema tooling) uses by default.
BOHR_TO_ANGSTROM: Final = 0.52917721067
# Two atoms closer than this are a duplicated line or a units mistake, never chemistry
# (the shortest bond, H2, is 0.74 Å); xtb would return nonsense or crash on them.
MIN_DISTANCE: Final = 0.5
# No molecule spans kilometres: a coordinate beyond this is a typo or a units mistake
# (and 1e308 would overflow the clash grid below).
MAX_COORDINATE: Final = 1e6
_AXES: Final = ("x", "y", "z")


class Molecule(BaseModel):
    """Element symbols and Cartesian coordinates in Ångström."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...]
    geometry: tuple[tuple[float, float, float], ...]
    comment: str = ""

    @field_validator("symbols")
    @classmethod
    def _known_elements(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for i, sym in enumerate(symbols, start=1):
            norm = normalise_symbol(sym)
            if norm is None:
                raise ValueError(f"atom {i}: unknown element {sym!r}")
            out.append(norm)
        return tuple(out)

    @field_validator("comment")
    @classmethod
    def _one_line(cls, comment: str) -> str:
        # any line break a reader would split on (\x1e, \u2028, ... too), not only \n
        return " ".join(comment.split()) if len(f"x{comment}x".splitlines()) > 1 else comment

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: ModelWrapValidatorHandler[Molecule]) -> Molecule:
        """The checks across fields. A Molecule instance passed where one is expected
        (`JobSpec(molecule=m)`, a record rebuilt around its spec) is returned as it is:
        the model is frozen, so an instance is exactly what was validated when it was
        made (or what its maker vouched for with `model_construct`) — pydantic's own
        rule for instances (`revalidate_instances="never"`), which an "after" validator
        would break by running these O(atoms) checks again at every hand-over."""
        if isinstance(data, Molecule):
            return data
        mol = handler(data)
        mol._check()
        return mol

    def _check(self) -> None:
        if not self.symbols:
            raise ValueError("the molecule has no atoms")
        if len(self.symbols) != len(self.geometry):
            raise ValueError(
                f"{len(self.symbols)} element symbols but {len(self.geometry)} coordinate triples"
            )
        for i, (sym, xyz) in enumerate(zip(self.symbols, self.geometry, strict=True), start=1):
            for axis, value in zip(_AXES, xyz, strict=True):
                if not math.isfinite(value):
                    raise ValueError(f"atom {i} ({sym}): {axis} coordinate {value} is not finite")
                if abs(value) > MAX_COORDINATE:
                    raise ValueError(
                        f"atom {i} ({sym}): {axis} coordinate {value:g} Å is out of range "
                        f"(at most {MAX_COORDINATE:g} Å from the origin)")
        clash = _closest_clash(self.geometry)
        if clash is not None:
            i, j, dist = clash
            raise ValueError(
                f"atoms {i + 1} ({self.symbols[i]}) and {j + 1} ({self.symbols[j]}) are "
                f"{dist:.3f} Å apart, closer than {MIN_DISTANCE} Å: a duplicated atom or "
                "coordinates in the wrong units?"
            )

    @property
    def natoms(self) -> int:
        return len(self.symbols)

    @property
    def formula(self) -> str:
        """Hill order: C, then H, then the rest alphabetically (all alphabetical without C)."""
        counts = Counter(self.symbols)
        if "C" in counts:
            order = ["C"] + (["H"] if "H" in counts else [])
            order += sorted(s for s in counts if s not in ("C", "H"))
        else:
            order = sorted(counts)
        return "".join(s if counts[s] == 1 else f"{s}{counts[s]}" for s in order)

    def nuclear_charge_sum(self) -> int:
        """Sum of the atomic numbers: the electron count of the neutral molecule."""
        return sum(ATOMIC_NUMBER[s] for s in self.symbols)

    def to_xyz(self) -> str:
        lines = [str(self.natoms), self.comment]
        lines += [
            f"{sym:<2s} {x:18.10f} {y:18.10f} {z:18.10f}"
            for sym, (x, y, z) in zip(self.symbols, self.geometry, strict=True)
        ]
        return "\n".join(lines) + "\n"

    def geometry_bohr(self) -> list[float]:
        """The coordinates as QCSchema wants them: one flat list, in bohr."""
        return [c / BOHR_TO_ANGSTROM for xyz in self.geometry for c in xyz]


# Up to this many atoms every pair is compared directly (n(n-1)/2 squared distances):
# cheaper than the grid's 27 cell look-ups per atom for the small molecules most jobs are.
_PAIRWISE_MAX: Final = 24
# The 27 cells around (and including) an atom's own, for the grid.
_NEIGHBOUR_CELLS: Final = tuple((dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                                for dz in (-1, 0, 1))


def _closest_clash(
    geometry: Sequence[tuple[float, float, float]],
) -> tuple[int, int, float] | None:
    """A pair of atoms (j < i, i the first atom that clashes with an earlier one) closer
    than MIN_DISTANCE, or None. O(N): every pair for small molecules, else a grid of
    MIN_DISTANCE cells where each atom is compared with those in the 27 cells around
    it only."""
    limit = MIN_DISTANCE * MIN_DISTANCE
    if len(geometry) <= _PAIRWISE_MAX:
        for i in range(1, len(geometry)):
            x, y, z = geometry[i]
            for j in range(i):
                a, b, c = geometry[j]
                dx, dy, dz = x - a, y - b, z - c  # products: no OverflowError as ** has
                if dx * dx + dy * dy + dz * dz < limit:
                    return j, i, math.dist(geometry[j], geometry[i])
        return None
    cells: dict[tuple[int, int, int], list[int]] = {}
    floor, step = math.floor, MIN_DISTANCE
    for i, (x, y, z) in enumerate(geometry):
        cx, cy, cz = floor(x / step), floor(y / step), floor(z / step)
        for dx, dy, dz in _NEIGHBOUR_CELLS:
            near = cells.get((cx + dx, cy + dy, cz + dz))
            if near is None:
                continue
            for j in near:
                a, b, c = geometry[j]
                dx, dy, dz = x - a, y - b, z - c
                if dx * dx + dy * dy + dz * dz < limit:
                    return j, i, math.dist(geometry[j], geometry[i])
        cells.setdefault((cx, cy, cz), []).append(i)
    return None


def _build(symbols: Sequence[str], geometry: Sequence[tuple[float, float, float]],
           comment: str, where: str = "") -> Molecule:
    try:
        return Molecule(symbols=tuple(symbols), geometry=tuple(geometry), comment=comment)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc, prefix=where) from None


def _atoms(n: int) -> str:
    return f"{n} atom{'' if n == 1 else 's'}"


def parse_xyz(text: str, *, first_line: int = 1) -> Molecule:
    """Read an XYZ file: atom count, a comment line, then ``symbol x y z`` (Å) per atom.

    Symbols are case-insensitive (``cl`` → ``Cl``); atomic numbers are accepted too.
    Columns after the coordinates (extended XYZ) are ignored. `first_line` is the line
    number of `text`'s first line in its file (for a frame of a multi-frame file), so
    that errors name the line of the file.
    """
    lines = text.lstrip("\ufeff").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    off = first_line - 1
    if start is None:
        raise InputError(
            "the molecule is empty: expected XYZ (atom count, comment, then one "
            "'symbol x y z' line per atom) or QCSchema JSON"
        )
    head = lines[start].split()
    if len(head) != 1 or not head[0].isdecimal():
        raise InputError(
            f"line {off + start + 1}: expected the number of atoms, got {lines[start].strip()!r}"
        )
    natoms = int(head[0])
    if natoms == 0:
        raise InputError(f"line {off + start + 1}: the molecule has no atoms")
    comment = lines[start + 1].strip() if start + 1 < len(lines) else ""
    first = start + 2  # index of the first atom line
    body = lines[first:]
    while body and not body[-1].strip():
        body.pop()
    if len(body) < natoms:
        raise InputError(
            f"line {off + start + 1} says {_atoms(natoms)} but {len(body)} atom "
            f"line{'' if len(body) == 1 else 's'} follow"
        )
    symbols: list[str] = []
    geometry: list[tuple[float, float, float]] = []
    for offset, line in enumerate(body[:natoms]):
        lineno = off + first + offset + 1
        parts = line.split()
        if len(parts) < 4:
            got = repr(line.strip()) if line.strip() else "an empty line"
            raise InputError(f"line {lineno}: expected 'symbol x y z', got {got}")
        symbol = normalise_symbol(parts[0])
        if symbol is None:
            raise InputError(f"line {lineno}: unknown element {parts[0]!r}")
        coords: list[float] = []
        for axis, raw in zip(_AXES, parts[1:4], strict=True):
            try:
                value = float(raw)
            except ValueError:
                raise InputError(
                    f"line {lineno}: {axis} coordinate {raw!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise InputError(f"line {lineno}: {axis} coordinate {raw!r} is not finite")
            coords.append(value)
        symbols.append(symbol)
        geometry.append((coords[0], coords[1], coords[2]))
    if len(body) > natoms:
        extra = body[natoms].split()
        if len(extra) == 1 and extra[0].isdecimal():
            raise InputError(
                f"line {off + first + natoms + 1}: a second structure starts here; "
                "submit one molecule per job"
            )
        raise InputError(
            f"line {off + start + 1} says {_atoms(natoms)} but {len(body)} atom lines follow"
        )
    return _build(symbols, geometry, comment)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"QCSchema molecule: {what} ({value!r}) is not a number")
    if not math.isfinite(value):
        raise InputError(f"QCSchema molecule: {what} ({value!r}) is not finite")
    return float(value)


def _qcschema_symbols(data: Mapping[str, Any]) -> list[str]:
    schema = data.get("schema_name")
    if schema is not None and schema not in ("qcschema_molecule", "qcschema"):
        raise InputError(f"QCSchema molecule: schema_name {schema!r}, expected 'qcschema_molecule'")
    raw = data.get("symbols")
    if raw is None:
        raise InputError("QCSchema molecule: 'symbols' is missing")
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise InputError("QCSchema molecule: 'symbols' must be a list of element symbols")
    symbols = []
    for i, sym in enumerate(raw):
        norm = normalise_symbol(sym) if isinstance(sym, str) else None
        if norm is None:
            raise InputError(f"QCSchema molecule: symbols[{i}]: unknown element {sym!r}")
        symbols.append(norm)
    if not symbols:
        raise InputError("QCSchema molecule: the molecule has no atoms")
    return symbols


def parse_qcschema_molecule(data: Mapping[str, Any]) -> Molecule:
    """Read a QCSchema molecule: ``symbols`` and ``geometry`` in bohr.

    ``geometry`` is the flat list of the schema (x1, y1, z1, x2, ...); a list of
    ``[x, y, z]`` triples is accepted too. Charge and multiplicity: `qcschema_charge_uhf`.
    """
    if not isinstance(data, Mapping):
        raise InputError("QCSchema molecule: expected a JSON object")
    symbols = _qcschema_symbols(data)
    raw = data.get("geometry")
    if raw is None:
        raise InputError("QCSchema molecule: 'geometry' is missing")
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise InputError("QCSchema molecule: 'geometry' must be a list of numbers (bohr)")
    flat: list[Any] = []
    for item in raw:
        if isinstance(item, Sequence) and not isinstance(item, str):
            flat.extend(item)
        else:
            flat.append(item)
    numbers = [_number(v, f"geometry[{k}]") for k, v in enumerate(flat)]
    if len(numbers) != 3 * len(symbols):
        raise InputError(
            f"QCSchema molecule: geometry has {len(numbers)} numbers but "
            f"{len(symbols)} atoms need {3 * len(symbols)}"
        )
    real = data.get("real")
    if real is not None and not all(bool(r) for r in real):
        raise InputError("QCSchema molecule: ghost atoms (real=false) are not supported by xtb")
    angstrom = [v * BOHR_TO_ANGSTROM for v in numbers]
    geometry = [(angstrom[k], angstrom[k + 1], angstrom[k + 2]) for k in range(0, len(angstrom), 3)]
    name = data.get("name")
    return _build(symbols, geometry, name if isinstance(name, str) else "", "QCSchema molecule")


def qcschema_charge_uhf(data: Mapping[str, Any]) -> tuple[int, int]:
    """``(charge, uhf)`` from ``molecular_charge`` and ``molecular_multiplicity`` (uhf = M - 1).

    Without a multiplicity, the lowest one the electron count allows (as QCSchema does).
    """
    if not isinstance(data, Mapping):
        raise InputError("QCSchema molecule: expected a JSON object")
    raw_charge = data.get("molecular_charge", 0)
    charge_f = _number(raw_charge, "molecular_charge")
    if not charge_f.is_integer():
        raise InputError(f"QCSchema molecule: molecular_charge {raw_charge} is not a whole number")
    charge = int(charge_f)
    raw_mult = data.get("molecular_multiplicity")
    if raw_mult is None:
        electrons = sum(ATOMIC_NUMBER[s] for s in _qcschema_symbols(data)) - charge
        return charge, electrons % 2
    mult_f = _number(raw_mult, "molecular_multiplicity")
    if not mult_f.is_integer() or mult_f < 1:
        raise InputError(
            f"QCSchema molecule: molecular_multiplicity {raw_mult} is not a whole number ≥ 1"
        )
    return charge, int(mult_f) - 1


def parse_molecule(text: str) -> Molecule:
    """A JSON object is read as a QCSchema molecule, anything else as XYZ."""
    body = text.lstrip("\ufeff").strip()
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"molecule JSON, line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        return parse_qcschema_molecule(data)
    return parse_xyz(text)
