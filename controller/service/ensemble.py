"""The arithmetic of a conformer ensemble: duplicates collapsed, Boltzmann weights, one
summary per molecule (`qforge export --per-molecule`, docs/ensembles.md). Pure: the
conformers come in as values, nothing is read here.

Duplicates: two converged conformers are the same minimum when their energies differ by
less than DUPLICATE_ENERGY_EH (0.05 kcal/mol) *and* their heavy-atom RMSD after optimal
superposition (Kabsch, same atom order: every conformer of a molecule has its atoms in
the same order) is below DUPLICATE_RMSD (0.125 Å); the thresholds are CREST's defaults
(--ewin's ethr and rthr). The lower of the two is kept. Mirror-image conformers (gauche+
and gauche-) do not superimpose and rightly count twice.

Weights: w_i = exp(-(E_i - E_min) / k_B T) / Σ_j exp(-(E_j - E_min) / k_B T) over the
distinct converged conformers, k_B in Eh/K (CODATA 2018), T the lowest conformer's
temperature. A weighted property (gap, dipole) is Σ w_i x_i over the conformers that have
it, divided by the sum of their weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

KB_EH_PER_K: Final = 3.166811563e-6  # Boltzmann constant in hartree per kelvin (CODATA 2018)
KCAL_PER_EH: Final = 627.509474
DUPLICATE_ENERGY_EH: Final = 0.05 / KCAL_PER_EH  # 0.05 kcal/mol
DUPLICATE_RMSD: Final = 0.125  # Å, heavy atoms

CONFORMER_SUFFIX: Final = re.compile(r"\.c\d+$")

Coords = tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Conformer:
    """One converged conformer: its job, optimised energy (Eh), HOMO-LUMO gap (eV),
    dipole (D) and heavy-atom coordinates (Å; hydrogens too for a molecule without
    heavy atoms)."""

    job_id: str
    energy: float
    gap: float | None = None
    dipole: float | None = None
    heavy: Coords = ()


@dataclass(frozen=True)
class Summary:
    """What the per-molecule row says about the converged conformers."""

    best: Conformer  # the lowest
    distinct: tuple[Conformer, ...]  # duplicates collapsed, lowest first
    weights: tuple[float, ...]  # Boltzmann weights of `distinct`, summing to 1
    energy: float  # Boltzmann-weighted energy (Eh)
    gap: float | None
    dipole: float | None


def boltzmann_weights(energies: Sequence[float], temperature: float) -> list[float]:
    """Normalised Boltzmann weights of `energies` (Eh) at `temperature` (K)."""
    if not energies:
        return []
    if temperature <= 0:
        raise ValueError(f"temperature must be above 0 K, not {temperature}")
    low = min(energies)
    factors = [math.exp(-(e - low) / (KB_EH_PER_K * temperature)) for e in energies]
    total = math.fsum(factors)
    return [f / total for f in factors]


def weighted(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """Σ w_i x_i over the x_i given, over the sum of their weights; None when none is."""
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    norm = math.fsum(w for _, w in pairs)
    if not pairs or norm == 0.0:
        return None
    return math.fsum(v * w for v, w in pairs) / norm


def rmsd(a: Coords, b: Coords) -> float:
    """RMSD of two structures with the same atom order after optimal superposition
    (Kabsch). inf when they cannot be compared (different atom counts)."""
    if len(a) != len(b) or not a:
        return math.inf
    if len(a) < 3:  # one atom: 0; two: the difference of their distances, halved
        return 0.0 if len(a) == 1 else abs(_dist(*a) - _dist(*b)) / 2
    import numpy as np

    p = np.asarray(a, dtype=float)
    q = np.asarray(b, dtype=float)
    p -= p.mean(axis=0)
    q -= q.mean(axis=0)
    u, s, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0  # a proper rotation, no reflection
    s[-1] *= d
    msd = (np.sum(p * p) + np.sum(q * q) - 2.0 * np.sum(s)) / len(a)
    return float(math.sqrt(max(float(msd), 0.0)))


def _dist(x: tuple[float, float, float], y: tuple[float, float, float]) -> float:
    return math.dist(x, y)


def collapse(conformers: Sequence[Conformer], *, energy: float = DUPLICATE_ENERGY_EH,
             rms: float = DUPLICATE_RMSD) -> list[Conformer]:
    """The distinct minima, lowest first: a conformer within `energy` Eh *and* `rms` Å of
    one kept already is that one again."""
    kept: list[Conformer] = []
    for c in sorted(conformers, key=lambda c: (c.energy, c.job_id)):
        if not any(abs(c.energy - k.energy) < energy and rmsd(c.heavy, k.heavy) < rms
                   for k in kept):
            kept.append(c)
    return kept


def summarize(conformers: Sequence[Conformer], temperature: float) -> Summary | None:
    """The summary of a molecule's converged conformers; None when there is none."""
    distinct = collapse(conformers)
    if not distinct:
        return None
    weights = boltzmann_weights([c.energy for c in distinct], temperature)
    energy = math.fsum(w * c.energy for w, c in zip(weights, distinct, strict=True))
    return Summary(best=distinct[0], distinct=tuple(distinct), weights=tuple(weights),
                   energy=energy, gap=weighted([c.gap for c in distinct], weights),
                   dipole=weighted([c.dipole for c in distinct], weights))


def is_conformer_name(name: str | None) -> bool:
    """Whether a job's name is a conformer's (`aspirin.c03`, conformers.conformer_name)."""
    return bool(name) and CONFORMER_SUFFIX.search(name or "") is not None


def ensemble_counts(members: Iterable[tuple[str, str | None, bool, bool, str | None]]
                    ) -> tuple[int, int, int, int] | None:
    """(molecules complete, molecules, conformer jobs finished, conformer jobs) of a
    group's members (job id, molecule key, follow-up?, finished?, name), or None when the
    group holds no ensemble (no molecule with two conformer jobs, no conformer's name).
    A molecule is complete when all its conformer jobs are finished; a member without a
    key is a molecule of its own; follow-up steps are not conformer jobs."""
    molecules: dict[str, bool] = {}
    jobs = finished = 0
    sizes: dict[str, int] = {}
    named = False
    for job_id, key, followup, done, name in members:
        if followup:
            continue
        key = key or job_id
        jobs += 1
        finished += done
        molecules[key] = molecules.get(key, True) and done
        sizes[key] = sizes.get(key, 0) + 1
        named = named or is_conformer_name(name)
    if not named and all(n < 2 for n in sizes.values()):
        return None
    return sum(molecules.values()), len(molecules), finished, jobs


def ensemble_line(counts: tuple[int, int, int, int]) -> str:
    """ "132 of 200 molecules complete; 1,840 of 2,000 conformer jobs" """
    complete, molecules, finished, jobs = counts
    return (f"{complete:,} of {molecules:,} molecules complete; "
            f"{finished:,} of {jobs:,} conformer jobs")
