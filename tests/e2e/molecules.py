"""Molecules of the end-to-end tests (XYZ text)."""

from __future__ import annotations

import math

WATER = """3
water
O 0.000000 0.000000 0.117790
H 0.000000 0.755453 -0.471161
H 0.000000 -0.755453 -0.471161
"""

# An unknown element symbol on line 4: rejected at submit, nothing written.
INVALID = """3
not a molecule
O 0.000000 0.000000 0.117790
Xq 0.000000 0.755453 -0.471161
H 0.000000 -0.755453 -0.471161
"""


def alkane(n: int) -> str:
    """All-trans CnH(2n+2), a rough geometry xtb optimises easily.

    C10H22 ohess takes ~17 s on one core here; C60H122 ohess needs ~90 MB and minutes.
    """
    atoms: list[tuple[str, float, float, float]] = []
    dx = 1.53 * math.sin(math.radians(56))
    dy = 1.53 * math.cos(math.radians(56))
    for i in range(n):
        y = dy / 2 if i % 2 == 0 else -dy / 2
        atoms.append(("C", i * dx, y, 0.0))
        s = 1 if i % 2 == 0 else -1
        for z in (0.89, -0.89):
            atoms.append(("H", i * dx, y + s * 0.51, z))
    atoms.append(("H", -0.9, dy / 2 + 0.1, 0.0))
    last_y = dy / 2 if (n - 1) % 2 == 0 else -dy / 2
    atoms.append(("H", (n - 1) * dx + 0.9, last_y + (0.1 if last_y > 0 else -0.1), 0.0))
    body = "".join(f"{a} {x:.5f} {y:.5f} {z:.5f}\n" for a, x, y, z in atoms)
    return f"{len(atoms)}\nC{n}H{2 * n + 2}\n{body}"
