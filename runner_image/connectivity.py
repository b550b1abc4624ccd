"""Which atoms are bonded, from distances alone: did the structure survive the optimisation?

The criterion is RDKit's `rdDetermineBonds.DetermineConnectivity` with its defaults
(RDKit ≥ 2024: "connect the dots", as Open Babel): atoms i and j are bonded when
0.4 Å ≤ d(i, j) ≤ r_i + r_j + 0.45 Å, with r the covalent radii of RDKit's periodic table
(`GetRcovalent`), coordinates and radii in single precision as RDKit holds them; two
hydrogens are never bonded, and a hydrogen within reach of several atoms keeps only its
nearest. It is written out here because the runner image has no RDKit; a unit test
checks it gives RDKit's bonds. Comparing the input's and the final geometry's
connectivity with the same criterion flags a proton that moved or a ring that opened,
without judging bonds the criterion itself misses (ionic pairs, long dative bonds).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Final

from qforge_runner.elements import ATOMIC_NUMBER

TOLERANCE: Final = 0.45  # Å beyond the sum of the covalent radii (RDKit's EXTDIST)
MIN_DIST2: Final = 0.16  # Å²: closer than 0.4 Å is no bond (overlapping atoms)
# RDKit's covalent radii (Å), by atomic number 1..118.
RCOV: Final[tuple[float, ...]] = (
    0.31, 0.28, 1.28, 0.96, 0.84, 0.76, 0.71, 0.66, 0.57, 0.58, 1.66, 1.41, 1.21, 1.11, 1.07,
    1.05, 1.02, 1.06, 2.03, 1.76, 1.7, 1.6, 1.52, 1.39, 1.39, 1.32, 1.26, 1.24, 1.32, 1.22,
    1.22, 1.2, 1.19, 1.2, 1.2, 1.16, 2.2, 1.95, 1.9, 1.75, 1.64, 1.54, 1.47, 1.46, 1.42, 1.39,
    1.45, 1.44, 1.42, 1.39, 1.39, 1.38, 1.39, 1.4, 2.44, 2.15, 2.07, 2.04, 2.03, 2.01, 1.99,
    1.98, 1.98, 1.96, 1.94, 1.92, 1.92, 1.89, 1.9, 1.87, 1.87, 1.75, 1.7, 1.62, 1.51, 1.44,
    1.41, 1.36, 1.36, 1.32, 1.45, 1.46, 1.48, 1.4, 1.5, 1.5, 2.6, 2.2, 2.15, 2.06, 2.0, 1.96,
    1.9, 1.87, 1.8, 1.69, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9,
    1.9, 1.9, 1.9, 1.36, 1.43, 1.62, 1.75, 1.65, 1.57,
)  # fmt: skip
# Above this many atoms the comparison is skipped (it is O(N²) in pure Python).
MAX_ATOMS: Final = 2000

Bond = tuple[int, int]  # 0-based atom indices, smaller first


def connectivity(symbols: Sequence[str], geometry: Sequence[tuple[float, float, float]]
                 ) -> frozenset[Bond]:
    """The bonded pairs of atoms (0-based, i < j) by RDKit's distance criterion."""
    n = len(symbols)
    xyz = array("f", [c for atom in geometry for c in atom])  # float32, as RDKit's
    radii = array("f", [RCOV[ATOMIC_NUMBER[s] - 1] for s in symbols])
    hydrogen = [s == "H" for s in symbols]
    bonds: set[Bond] = set()
    for i in range(n):
        xi, yi, zi, ri = xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2], radii[i]
        for j in range(i + 1, n):
            if hydrogen[i] and hydrogen[j]:
                continue
            d2 = (xi - xyz[3 * j]) ** 2 + (yi - xyz[3 * j + 1]) ** 2 + (zi - xyz[3 * j + 2]) ** 2
            reach = ri + radii[j] + TOLERANCE
            if MIN_DIST2 <= d2 <= reach * reach:
                bonds.add((i, j))
    for h in (i for i in range(n) if hydrogen[i]):
        mine = [b for b in bonds if h in b]
        if len(mine) > 1:  # keep the nearest partner only
            def dist2(bond: Bond, h: int = h) -> float:
                other = bond[0] if bond[1] == h else bond[1]
                return sum((geometry[h][k] - geometry[other][k]) ** 2 for k in range(3))
            keep = min(mine, key=dist2)
            bonds.difference_update(b for b in mine if b != keep)
    return frozenset(bonds)


def describe_changes(symbols: Sequence[str], before: frozenset[Bond], after: frozenset[Bond],
                     limit: int = 6) -> str:
    """``"broken O1-H4; formed O5-H4"`` (1-based atom numbers, as in the XYZ file)."""
    def name(bond: Bond) -> str:
        i, j = bond
        return f"{symbols[i]}{i + 1}-{symbols[j]}{j + 1}"

    parts = []
    for label, bonds in (("broken", sorted(before - after)), ("formed", sorted(after - before))):
        if bonds:
            shown = ", ".join(name(b) for b in bonds[:limit])
            more = f" and {len(bonds) - limit} more" if len(bonds) > limit else ""
            parts.append(f"{label} {shown}{more}")
    return "; ".join(parts)
