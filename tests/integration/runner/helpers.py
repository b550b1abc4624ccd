"""Helpers of the runner's integration tests: molecules, direct xtb runs, process checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner_image.spec import JobSpec

XTB = shutil.which("xtb")
needs_xtb = [
    pytest.mark.xtb,
    pytest.mark.skipif(XTB is None, reason="xtb is not installed (Debian: apt-get install xtb)"),
]

WATER = """3
water
O  0.000000  0.000000  0.117790
H  0.000000  0.755453 -0.471161
H  0.000000 -0.755453 -0.471161
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
METHANE_DISTORTED = """5
methane, distorted
C  0.0  0.0  0.0
H  0.0  0.0  1.3
H  1.0  0.0 -0.2
H -0.5  0.9 -0.3
H -0.5 -0.8 -0.4
"""


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


def xtb_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.setdefault("XTBPATH", "/usr/share/xtb")
    return env


def direct_energy(spec: JobSpec, folder: Path) -> float:
    """Run xtb by hand with the spec's flags; its final total energy (text, 12 decimals)."""
    folder.mkdir(parents=True)
    (folder / "input.xyz").write_text(spec.molecule.to_xyz())
    proc = subprocess.run(["xtb", "input.xyz", *spec.xtb_args()], cwd=folder, env=xtb_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    energies = re.findall(r"\|\s*TOTAL ENERGY\s+(-?\d+\.\d+)\s+Eh\s*\|", proc.stdout)
    assert energies, proc.stdout[-2000:]
    return float(energies[-1])


def wrapper(folder: Path, *, extra: str = "", before: str = "") -> tuple[Path, Path]:
    """An `xtb` that records its pid (= its process group id) and then becomes xtb.

    `extra` is appended to xtb's arguments (e.g. ``--input /abs/xcontrol``); `before` runs
    in the shell first. Returns (the script, the pid file).
    """
    pid_file = folder / "xtb.pid"
    script = folder / "xtb-wrapper"
    script.write_text(f'#!/bin/sh\n{before}\necho $$ > "{pid_file}"\nexec xtb "$@" {extra}\n')
    script.chmod(0o755)
    return script, pid_file


def wait_for(predicate: Callable[[], object], seconds: float = 60.0,
             what: str = "condition") -> None:
    """Poll `predicate` every 50 ms, up to `seconds` (a bounded wait, not a timing check)."""
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {seconds} s")
        time.sleep(0.05)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def living_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies excluded: an orphan's zombie
    waits for PID 1, which in some containers never reaps it)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive
