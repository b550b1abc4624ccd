"""What a successful xtb run left in its scratch folder, read into a `JobResult`: the
energy, gap, dipole, charges, geometry, frequencies and thermochemistry, and the quality
assessment of them (the harness calls `collect_result` once xtb has exited cleanly)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from qforge_runner.connectivity import MAX_ATOMS as MAX_CONNECTIVITY_ATOMS
from qforge_runner.connectivity import connectivity, describe_changes
from qforge_runner.errors import InputError
from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.quality import assess
from qforge_runner.result import JobResult
from qforge_runner.spec import JobSpec, Method, Task
from qforge_runner.thermo import Thermochemistry, ThermoMissing, parse_thermo
from qforge_runner.xtb_output import (
    TextOutput,
    parse_charges,
    parse_json_output,
    parse_text_output,
    parse_vibspectrum,
    vibrational_frequencies,
)


class OutputError(Exception):
    """xtb finished cleanly but left no usable result."""


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _dipole(json_dipole: tuple[float, float, float] | None,
            text: TextOutput) -> tuple[float, float, float] | None:
    """The final dipole. xtb 6.5's xtbout.json keeps the dipole of the *first* single
    point of an optimisation, so the text output's final one (3 decimals) decides; the
    JSON's more precise numbers are used when they agree with it."""
    if text.dipole is None:
        return json_dipole
    if json_dipole is not None and all(
        abs(j - t) <= 6e-4 for j, t in zip(json_dipole, text.dipole, strict=True)
    ):
        return json_dipole
    return text.dipole


def _charges_from_files(scratch: Path) -> tuple[float, ...] | None:
    for name in ("charges", "gfnff_charges"):  # xTB methods / GFN-FF
        raw = read_text(scratch / name)
        if raw is not None:
            try:
                return parse_charges(raw)
            except (ValueError, IndexError):
                return None
    return None


def collect_result(scratch: Path, stdout: str, spec: JobSpec, wall_time: float, *,
                   parsed: TextOutput | None = None) -> JobResult:
    """Build the result from what a successful xtb run left in `scratch` (`parsed`: the
    output, already parsed)."""
    text = parsed or parse_text_output(stdout)
    warnings = list(text.warnings)
    raw_json = read_text(scratch / "xtbout.json")
    js = parse_json_output(raw_json) if raw_json is not None else None
    usable = js if js is not None and js.energy is not None else None
    from_text = usable is None
    if js is not None and usable is None:
        warnings.append(f"xtbout.json unusable ({js.problem}): values from xtb's text output")
    elif js is None and spec.method is not Method.gfnff:  # GFN-FF never writes one
        warnings.append("xtbout.json missing: values from xtb's text output")
    energy = usable.energy if usable is not None else text.energy
    if energy is None:
        raise OutputError("xtb finished but its output holds no total energy")

    gap = usable.gap if usable and usable.gap is not None else text.gap
    if spec.method is Method.gfnff:
        gap = None  # a force field has no orbitals

    geometry = None
    if spec.task in (Task.opt, Task.ohess):
        opt_text = read_text(scratch / "xtbopt.xyz")
        if opt_text is None:
            raise OutputError("the optimisation finished but xtb wrote no xtbopt.xyz")
        try:
            geometry = parse_xyz(opt_text)
        except InputError as exc:
            raise OutputError(f"xtbopt.xyz is unreadable: {exc}") from None

    charges = usable.partial_charges if usable else None
    if charges is None:
        charges = _charges_from_files(scratch)
    if charges is not None and len(charges) != spec.molecule.natoms:
        charges = None

    frequencies = None
    if spec.task in (Task.hess, Task.ohess):
        modes = usable.frequencies if usable else None
        if modes is None:
            vib = read_text(scratch / "vibspectrum")
            modes = parse_vibspectrum(vib) if vib is not None else None
        if modes is None:
            raise OutputError("the Hessian finished but xtb reported no frequencies")
        final = geometry or spec.start
        frequencies = vibrational_frequencies(modes, final.geometry)

    converged = text.opt_converged is not False
    version = usable.xtb_version if usable and usable.xtb_version else text.xtb_version
    thermo, thermo_problem = _thermochemistry(stdout, spec)
    topology_change = _topology_change(spec, geometry)
    return JobResult(
        energy=energy,
        gap=gap,
        dipole=None if spec.method is Method.gfnff else _dipole(
            usable.dipole if usable else None, text),
        partial_charges=charges,
        geometry=geometry,
        frequencies=frequencies,
        converged=converged,
        xtb_version=version,
        method=spec.method,
        task=spec.task,
        wall_time=wall_time,
        quality=assess(method=spec.method, converged=converged, gap=gap,
                       frequencies=frequencies, from_text_output=from_text, warnings=warnings,
                       topology_change=topology_change, thermo_problem=thermo_problem),
        formula=spec.molecule.formula,
        thermochemistry=thermo,
        topology_changed=None if geometry is None else topology_change is not None,
    )


def _thermochemistry(stdout: str, spec: JobSpec) -> tuple[Thermochemistry | None, str | None]:
    """hess/ohess: xtb's thermochemistry, or why there is none (a quality note, the job
    still completes); other tasks: neither."""
    if spec.task not in (Task.hess, Task.ohess):
        return None, None
    try:
        thermo = parse_thermo(stdout)
    except (ThermoMissing, ValidationError) as exc:
        return None, str(exc).splitlines()[0]
    if abs(thermo.temperature - spec.temperature) > 0.01:
        return None, (f"xtb computed it at {thermo.temperature:g} K, not at the job's "
                      f"{spec.temperature:g} K")
    return thermo, None


def _topology_change(spec: JobSpec, final: Molecule | None) -> str | None:
    """How the optimisation changed the connectivity (None: unchanged, or no
    optimisation, or a molecule too big for the pure-Python comparison)."""
    if final is None or final.natoms > MAX_CONNECTIVITY_ATOMS \
            or final.symbols != spec.molecule.symbols:
        return None
    before = connectivity(spec.molecule.symbols, spec.molecule.geometry)
    after = connectivity(final.symbols, final.geometry)
    if before == after:
        return None
    return describe_changes(final.symbols, before, after)
