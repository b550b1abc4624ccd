"""Reading what xtb 6.5 leaves behind: xtbout.json, its text output, and its files.

Pure functions over text, so they are tested on recorded real outputs
(tests/unit/runner/fixtures) without running xtb.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

_NUM = r"(-?\d+\.\d+(?:[EeDd][-+]?\d+)?)"
_TOTAL_ENERGY_BOX: Final = re.compile(rf"\|\s*TOTAL ENERGY\s+{_NUM}\s+Eh\s*\|")
_TOTAL_ENERGY_SUMMARY: Final = re.compile(rf"::\s*total energy\s+{_NUM}\s+Eh\s*::")
_GAP_BOX: Final = re.compile(rf"\|\s*HOMO-LUMO GAP\s+{_NUM}\s+eV\s*\|")
_GAP_SUMMARY: Final = re.compile(rf"::\s*HOMO-LUMO gap\s+{_NUM}\s+eV\s*::")
_DIPOLE_FULL: Final = re.compile(rf"^\s*full:\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$", re.M)
_VERSION: Final = re.compile(r"\*\s*xtb version\s+(.+?)\s+compiled by")
_OPT_CONVERGED: Final = re.compile(r"GEOMETRY OPTIMIZATION CONVERGED AFTER\s+(\d+)")
_OPT_FAILED: Final = re.compile(r"FAILED TO CONVERGE GEOMETRY OPTIMIZATION(?: IN\s+(\d+))?")
_BLOCK_LINE: Final = re.compile(r"^-\d+-\s+(.*\S)\s*$")

# Warnings xtb prints on every healthy run of that kind; they say nothing about the result.
BENIGN_WARNINGS: Final = (
    "gfnff_setup: Could not read topology file.",  # GFN-FF's first run writes the topology
)


def _float(text: str) -> float:
    return float(text.replace("D", "E").replace("d", "e"))


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    match = None
    for match in pattern.finditer(text):  # noqa: B007 - we want the last one
        pass
    return match


@dataclass(frozen=True)
class TextOutput:
    """What xtb's standard output says (the fallback when xtbout.json is missing)."""

    energy: float | None = None  # the final total energy, Eh
    gap: float | None = None  # the final HOMO-LUMO gap, eV
    dipole: tuple[float, float, float] | None = None  # a.u., 3 decimals
    xtb_version: str | None = None
    opt_converged: bool | None = None  # None: no optimisation ran
    opt_cycles: int | None = None
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # the [ERROR] block, outermost first, root cause last


def _blocks(text: str, marker: str) -> list[str]:
    """The ``-N- message`` lines of xtb's ``[WARNING]``/``[ERROR]`` blocks, in order."""
    out: list[str] = []
    start = text.find(marker)
    if start < 0:
        return out  # most outputs have neither block: one C-level search, no line split
    start = text.rfind("\n", 0, start) + 1  # the marker's line, for startswith below
    inside = False
    for line in text[start:].splitlines():
        if line.startswith(marker):
            inside = True
            continue
        if inside:
            if line.startswith("####"):
                inside = False
                continue
            match = _BLOCK_LINE.match(line)
            if match:
                out.append(match.group(1))
    return out


def parse_text_output(text: str) -> TextOutput:
    """The final energy, gap and dipole, the version, convergence, warnings and errors."""
    energy = _last(_TOTAL_ENERGY_BOX, text) or _last(_TOTAL_ENERGY_SUMMARY, text)
    gap = _last(_GAP_BOX, text) or _last(_GAP_SUMMARY, text)
    dipole = None
    head = text.rfind("molecular dipole:")
    if head >= 0:
        match = _DIPOLE_FULL.search(text, head, head + 400)
        if match:
            dipole = (_float(match.group(1)), _float(match.group(2)), _float(match.group(3)))
    version = _VERSION.search(text)
    converged = _last(_OPT_CONVERGED, text)
    failed = _last(_OPT_FAILED, text)
    opt_converged: bool | None = None
    cycles = None
    if failed:
        opt_converged = False
        cycles = int(failed.group(1)) if failed.group(1) else None
    elif converged:
        opt_converged, cycles = True, int(converged.group(1))
    warnings = tuple(w for w in _blocks(text, "[WARNING]") if w not in BENIGN_WARNINGS)
    return TextOutput(
        energy=_float(energy.group(1)) if energy else None,
        gap=_float(gap.group(1)) if gap else None,
        dipole=dipole,
        xtb_version=version.group(1).strip() if version else None,
        opt_converged=opt_converged,
        opt_cycles=cycles,
        warnings=warnings,
        errors=tuple(_blocks(text, "[ERROR]")),
    )


@dataclass(frozen=True)
class JsonOutput:
    """The parts of xtbout.json qforge uses; `problem` says why the file could not be used."""

    energy: float | None = None
    gap: float | None = None
    dipole: tuple[float, float, float] | None = None
    partial_charges: tuple[float, ...] | None = None
    frequencies: tuple[float, ...] | None = None  # all 3N modes, as xtb lists them
    xtb_version: str | None = None
    problem: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _finite_floats(value: Any, length: int | None = None) -> tuple[float, ...] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        out.append(float(v))
    return tuple(out)


def parse_json_output(text: str) -> JsonOutput:
    """Read xtbout.json; a broken or incomplete file gives ``problem`` and no energy."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return JsonOutput(problem=f"not valid JSON (line {exc.lineno}: {exc.msg})")
    if not isinstance(data, dict):
        return JsonOutput(problem="not a JSON object")
    energy = data.get("total energy")
    if isinstance(energy, bool) or not isinstance(energy, int | float) \
            or not math.isfinite(energy):
        return JsonOutput(problem="no finite 'total energy'", raw=data)
    gap = data.get("HOMO-LUMO gap/eV")
    dipole = _finite_floats(data.get("dipole"), 3)
    version = data.get("xtb version")
    return JsonOutput(
        energy=float(energy),
        gap=float(gap) if isinstance(gap, int | float) and math.isfinite(gap) else None,
        dipole=(dipole[0], dipole[1], dipole[2]) if dipole else None,
        partial_charges=_finite_floats(data.get("partial charges")),
        frequencies=_finite_floats(data.get("vibrational frequencies/rcm")),
        xtb_version=version if isinstance(version, str) else None,
        raw=data,
    )


def parse_vibspectrum(text: str) -> tuple[float, ...]:
    """Every mode's wave number (cm⁻¹) from xtb's ``vibspectrum`` (Turbomole format)."""
    freqs: list[float] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("$vibrational spectrum"):
            inside = True
            continue
        if not inside or not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("$"):
            break
        parts = stripped.split()
        # "mode [symmetry] wave-number intensity IR RAMAN": the symmetry may be blank
        number = parts[2] if len(parts) >= 6 and not _is_number(parts[1]) else parts[1]
        freqs.append(float(number))
    return tuple(freqs)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_charges(text: str) -> tuple[float, ...]:
    """Partial charges from xtb's ``charges`` (or GFN-FF's ``gfnff_charges``) file."""
    return tuple(float(line.split()[0]) for line in text.splitlines() if line.strip())


def is_linear(geometry: Sequence[tuple[float, float, float]], tol: float = 1e-3) -> bool:
    """True for one or two atoms, or when every atom lies on one line (within `tol` Å)."""
    if len(geometry) <= 2:
        return True
    a = geometry[0]
    far = max(geometry, key=lambda p: math.dist(a, p))
    length = math.dist(a, far)
    if length == 0.0:
        return True
    u = [(far[k] - a[k]) / length for k in range(3)]
    for p in geometry:
        d = [p[k] - a[k] for k in range(3)]
        cross = (d[1] * u[2] - d[2] * u[1], d[2] * u[0] - d[0] * u[2], d[0] * u[1] - d[1] * u[0])
        if math.hypot(*cross) > tol:
            return False
    return True


def vibrational_frequencies(
    modes: Sequence[float], geometry: Sequence[tuple[float, float, float]]
) -> tuple[float, ...]:
    """The 3N-6 (3N-5 if linear) vibrations: drop the translations and rotations.

    xtb projects those out and lists them as ~0 cm⁻¹ among all 3N modes; they are the
    ones closest to zero (an imaginary mode stays, as a negative number).
    """
    natoms = len(geometry)
    if natoms < 2:
        return ()
    n_rt = 5 if is_linear(geometry) else 6
    if len(modes) <= n_rt:
        return ()
    zero = set(sorted(range(len(modes)), key=lambda i: abs(modes[i]))[:n_rt])
    return tuple(f for i, f in enumerate(modes) if i not in zero)


_BACKTRACE = re.compile(r"^\s*(#\d+\s+0x|at \.\./)")


def tail(text: str, lines: int = 30, chars: int = 4000) -> str:
    """The last lines of an output, Fortran backtrace lines left out. Read from the
    end: the cost is the tail's, not the whole output's (it is taken for every job)."""
    kept: list[str] = []
    for line in reversed(text.splitlines()):
        if len(kept) >= lines:
            break
        if line.strip() and not _BACKTRACE.match(line):
            kept.append(line.rstrip())
    return "\n".join(reversed(kept))[-chars:]
