"""A quality assessment of a finished calculation: can a chemist trust the numbers?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from qforge_runner.result import Quality
from qforge_runner.spec import Method

# Below this HOMO-LUMO gap the SCC result is suspect (near-degenerate frontier orbitals:
# often a wrong charge or spin, a metal-like system, or a broken structure).
MIN_GAP_EV: Final = 0.1
# A frequency below this is a real imaginary mode; above it, numerical noise of the
# numerical Hessian (the cutoff xtb's own thermochemistry uses).
IMAGINARY_CUTOFF: Final = -20.0
# The words of the notes below that a reader of a quality's verdict already has
# (controller/cli/render.py leaves them out after "not converged" / "not a minimum").
NOT_CONVERGED: Final = "the calculation did not converge"
NOT_A_MINIMUM: Final = "the structure is not a minimum"
TOPOLOGY_CHANGED: Final = "the optimisation changed the bonds"


def assess(
    *,
    method: Method,
    converged: bool,
    gap: float | None,
    frequencies: Sequence[float] | None,
    from_text_output: bool,
    warnings: Sequence[str] = (),
    topology_change: str | None = None,
    thermo_problem: str | None = None,
) -> Quality:
    """`topology_change`: how the optimisation changed the bonds (None: it did not);
    `thermo_problem`: why a Hessian run has no thermochemistry (None: it has one, or
    none was asked for)."""
    notes = list(warnings)
    if method is Method.gfnff:
        gap_ok = True  # a force field has no orbitals, so no gap to check
    elif gap is None:
        gap_ok = False
        notes.append("no HOMO-LUMO gap found in xtb's output")
    else:
        gap_ok = gap > MIN_GAP_EV
        if not gap_ok:
            notes.append(
                f"HOMO-LUMO gap {gap:.3f} eV is below {MIN_GAP_EV} eV: check charge and uhf "
                "(a near-degenerate or wrong electronic state)"
            )
    imaginary = sorted(f for f in frequencies or () if f < IMAGINARY_CUTOFF)
    if imaginary:
        plural = "frequency" if len(imaginary) == 1 else "frequencies"
        notes.append(
            f"{len(imaginary)} imaginary {plural} (lowest {imaginary[0]:.1f} cm⁻¹): "
            f"{NOT_A_MINIMUM}"
        )
    if not converged:
        notes.append(NOT_CONVERGED)
    if topology_change is not None:
        notes.append(f"{TOPOLOGY_CHANGED} ({topology_change})")
    if thermo_problem is not None:
        notes.append(f"no thermochemistry: {thermo_problem}")
    return Quality(
        converged=converged,
        gap_ok=gap_ok,
        imaginary_frequencies=len(imaginary),
        from_text_output=from_text_output,
        topology_changed=topology_change is not None,
        warnings=tuple(notes),
        ok=converged and gap_ok and not imaginary and topology_change is None
        and thermo_problem is None,
    )
