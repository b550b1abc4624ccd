"""The molecules of qforge's tests and benchmarks, each defined once (XYZ text, Ångström).

Keep every text exactly as it is: the fixtures under tests/unit/runner/fixtures were
recorded from these inputs (tests/unit/runner/fixtures/record.py), tests compare energies
of runs started from them, and the benchmarks' figures were measured with them. A new
geometry gets a new name. Plain Python only (no qforge imports), so that record.py and
the benchmarks can import it as scripts.
"""

from __future__ import annotations

import math

# --- water -------------------------------------------------------------------------
# Two starting geometries, both optimising to -5.0705444 Eh with GFN2-xTB.

# The runner's water (O-H 0.958 Å, H-O-H 104.1°): the recorded xtb fixtures, the
# runner's unit and integration tests and tests/e2e start from it.
WATER = """3
water
O  0.000000  0.000000  0.117790
H  0.000000  0.755453 -0.471161
H  0.000000 -0.755453 -0.471161
"""

# The textbook experimental geometry (O-H 0.958 Å, H-O-H 104.5°): the local worker's
# integration tests and the benchmarks start from it.
WATER_EXPERIMENTAL = """3
water
O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
"""

# --- open shells and ions ---------------------------------------------------------------

# Linear: xtb 6.5's hessian of it dies of stack smashing (fixture linear_hess_crash).
HYDROXYL = """2
hydroxyl radical
O 0.0 0.0 0.0
H 0.0 0.0 0.97
"""
AMMONIUM = """5
ammonium
N  0.0000  0.0000  0.0000
H  0.5947  0.5947  0.5947
H -0.5947 -0.5947  0.5947
H -0.5947  0.5947 -0.5947
H  0.5947 -0.5947 -0.5947
"""
METHYL = """4
methyl radical
C  0.000  0.000  0.000
H  1.080  0.000  0.000
H -0.540  0.935  0.000
H -0.540 -0.935  0.000
"""

# --- closed-shell organics -------------------------------------------------------------

METHANE = """5
methane
C   0.000000   0.000000   0.000000
H   0.629118   0.629118   0.629118
H  -0.629118  -0.629118   0.629118
H  -0.629118   0.629118  -0.629118
H   0.629118  -0.629118  -0.629118
"""
# Far from its minimum: an optimisation capped at 2 cycles does not converge.
METHANE_DISTORTED = """5
methane, distorted
C  0.0  0.0  0.0
H  0.0  0.0  1.3
H  1.0  0.0 -0.2
H -0.5  0.9 -0.3
H -0.5 -0.8 -0.4
"""
AMMONIA = """4
ammonia
N   0.000000   0.000000   0.116489
H   0.000000   0.939731  -0.271808
H   0.813831  -0.469865  -0.271808
H  -0.813831  -0.469865  -0.271808
"""
ETHANE = """8
ethane
C   0.000000   0.000000   0.765000
C   0.000000   0.000000  -0.765000
H   1.018000   0.000000   1.164000
H  -0.509000   0.881600   1.164000
H  -0.509000  -0.881600   1.164000
H  -1.018000   0.000000  -1.164000
H   0.509000  -0.881600  -1.164000
H   0.509000   0.881600  -1.164000
"""
METHANOL = """6
methanol
C  -0.046520   0.662050   0.000000
O  -0.046520  -0.755950   0.000000
H  -1.086520   0.976050   0.000000
H   0.437480   1.070050   0.889000
H   0.437480   1.070050  -0.889000
H   0.861480  -1.064950   0.000000
"""
ACETONE = """10
acetone
C   0.000000   0.000000   0.178000
O   0.000000   0.000000   1.395000
C   1.283000   0.000000  -0.617000
C  -1.283000   0.000000  -0.617000
H   2.140000   0.000000   0.053000
H   1.321000   0.880000  -1.262000
H   1.321000  -0.880000  -1.262000
H  -2.140000   0.000000   0.053000
H  -1.321000  -0.880000  -1.262000
H  -1.321000   0.880000  -1.262000
"""
BENZENE = """12
benzene
C   0.000000   1.396792   0.000000
C   1.209657   0.698396   0.000000
C   1.209657  -0.698396   0.000000
C   0.000000  -1.396792   0.000000
C  -1.209657  -0.698396   0.000000
C  -1.209657   0.698396   0.000000
H   0.000000   2.484212   0.000000
H   2.151390   1.242106   0.000000
H   2.151390  -1.242106   0.000000
H   0.000000  -2.484212   0.000000
H  -2.151390  -1.242106   0.000000
H  -2.151390   1.242106   0.000000
"""
# Big enough that an ohess takes a few seconds on one core.
CAFFEINE = """24
caffeine
C  1.5038 -1.0193  0.0000
N  0.6806  0.1655  0.0000
C  1.2014  1.4228  0.0000
N  0.3223  2.4010  0.0000
C -0.9203  1.8359  0.0000
C -2.1855  2.4902  0.0000
O -2.3932  3.6982  0.0000
N -3.2325  1.6029  0.0000
C -4.5760  2.1652  0.0000
C -3.1141  0.2263  0.0000
O -4.0781 -0.5283  0.0000
N -1.8311 -0.3312  0.0000
C -1.6979 -1.7838  0.0000
C -0.7286  0.4978  0.0000
H  2.2694  1.5811  0.0000
H  1.1975 -1.6030  0.8778
H  1.1975 -1.6030 -0.8778
H  2.5658 -0.7677  0.0000
H -4.4908  3.2542  0.0000
H -5.1246  1.8480  0.8931
H -5.1246  1.8480 -0.8931
H -2.6839 -2.2502  0.0000
H -1.1569 -2.0997  0.8907
H -1.1569 -2.0997 -0.8907
"""
CAFFEINE_FORMULA = "C8H10N4O2"

# --- inputs that are not molecules ---------------------------------------------------

# The count says 3 atoms, two follow: xtb refuses it (fixture bad_geometry).
WATER_MISCOUNTED = """3
water with a missing atom
O 0.0 0.0 0.0
H 0.0 0.0 0.97
"""
# An unknown element symbol on line 4: rejected at submit, nothing written.
UNKNOWN_ELEMENT = """3
not a molecule
O 0.000000 0.000000 0.117790
Xq 0.000000 0.755453 -0.471161
H 0.000000 -0.755453 -0.471161
"""

# --- generated ---------------------------------------------------------------------


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


def water_cluster(n: int = 3) -> str:
    """n³ water molecules 3 Å apart: an ohess of it runs for minutes."""
    lines = []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                x, y, z = 3.0 * i, 3.0 * j, 3.0 * k
                lines += [f"O {x:.4f} {y:.4f} {z + 0.1178:.4f}",
                          f"H {x:.4f} {y + 0.7555:.4f} {z - 0.4712:.4f}",
                          f"H {x:.4f} {y - 0.7555:.4f} {z - 0.4712:.4f}"]
    return f"{len(lines)}\nwater cluster\n" + "\n".join(lines) + "\n"
