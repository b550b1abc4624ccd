"""Helpers of the runner's integration tests: direct xtb runs, process checks (the
molecules are in tests/molecules.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qforge_runner.spec import XCONTROL_FILE, JobSpec

XTB = shutil.which("xtb")
needs_xtb = [
    pytest.mark.xtb,
    pytest.mark.skipif(XTB is None, reason="xtb is not installed (Debian: apt-get install xtb)"),
]

def xtb_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.setdefault("XTBPATH", "/usr/share/xtb")
    return env


def direct_energy(spec: JobSpec, folder: Path) -> float:
    """Run xtb by hand with the spec's flags; its final total energy (text, 12 decimals)."""
    folder.mkdir(parents=True)
    stdout = direct_output(spec, folder)
    energies = re.findall(r"\|\s*TOTAL ENERGY\s+(-?\d+\.\d+)\s+Eh\s*\|", stdout)
    assert energies, stdout[-2000:]
    return float(energies[-1])


def direct_output(spec: JobSpec, folder: Path) -> str:
    """Run xtb by hand with the spec's flags (and xcontrol input); its standard output."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.xyz").write_text(spec.molecule.to_xyz())
    xcontrol = spec.xcontrol()
    if xcontrol is not None:
        (folder / XCONTROL_FILE).write_text(xcontrol)
    proc = subprocess.run(["xtb", "input.xyz", *spec.xtb_args()], cwd=folder, env=xtb_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


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


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields of /proc/<pid>/stat after the name: state, ppid,
    pgrp, ...) of every process; one that ends while being read is left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        yield int(entry.name), name, stat[stat.rindex(")") + 2:].split()


def living_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies excluded: an orphan's zombie
    waits for PID 1, which in some containers never reaps it)."""
    return [pid for pid, _, fields in processes() if int(fields[2]) == pgid and fields[0] != "Z"]
