"""The GFN-FF pre-optimisation a job may ask for (`JobSpec.preopt_gfnff`, the retry
ladder's `preopt` rung: docs/retry.md): xtb's force field optimises the start geometry in
a folder of its own inside the scratch folder, and the calculation starts from its
result."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

from qforge_runner.environment import xtb_environment
from qforge_runner.errors import InputError
from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.process import run_process
from qforge_runner.spec import JobSpec

PREOPT_FOLDER: Final = "preopt"  # in the scratch folder
INPUT_FILE: Final = "input.xyz"
OUTPUT_FILE: Final = "xtb.log"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def preoptimise(spec: JobSpec, scratch: Path, deadline: float | None,
                cancel: threading.Event | None, xtb_path: str, log: logging.Logger,
                label: str) -> Molecule | None:
    """A GFN-FF optimisation of the start geometry (`spec.preopt_gfnff`), in a folder of
    its own: its final geometry, or None when it did not give one (the calculation then
    starts from the geometry as it was; the log says so)."""
    folder = scratch / PREOPT_FOLDER
    folder.mkdir()
    (folder / INPUT_FILE).write_text(spec.start.to_xyz(), encoding="utf-8")
    argv = [xtb_path, INPUT_FILE, *spec.preopt_args()]
    log.info("GFN-FF pre-optimisation for job %s: xtb %s", label, " ".join(argv[1:]))
    try:
        proc = run_process(argv, cwd=folder, env=xtb_environment(spec, xtb_path),
                           stdout=folder / OUTPUT_FILE, timeout=deadline, cancel=cancel)
        text = _read(folder / "xtbopt.xyz")
        if proc.returncode == 0 and not proc.timed_out and not proc.cancelled and text:
            return parse_xyz(text)
    except (OSError, InputError) as exc:
        log.warning("GFN-FF pre-optimisation for job %s failed: %s", label, exc)
        return None
    log.warning("GFN-FF pre-optimisation for job %s gave no geometry: starting from the "
                "geometry as it was", label)
    return None
