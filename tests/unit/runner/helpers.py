"""Shared helpers of the runner's unit tests: water and the recorded xtb fixtures (the
molecules are in tests/molecules.py; WATER and HYDROXYL are re-exported here)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import HYDROXYL as HYDROXYL
from tests.molecules import WATER as WATER

FIXTURES = Path(__file__).parent / "fixtures"


def water() -> Molecule:
    return parse_xyz(WATER)


def water_spec(**fields: Any) -> JobSpec:
    return JobSpec(molecule=water(), **fields)


@dataclass(frozen=True)
class Recorded:
    """One recorded xtb run (see fixtures/record.py)."""

    folder: Path
    returncode: int
    files: frozenset[str]
    stdout: str
    stderr: str

    def scratch(self, tmp: Path) -> Path:
        """A copy of the files xtb left, as the harness would find them."""
        out = tmp / self.folder.name
        shutil.copytree(self.folder, out)
        for name in ("meta.json", "stdout.txt", "stderr.txt"):
            (out / name).unlink()
        return out


def recorded(name: str) -> Recorded:
    folder = FIXTURES / name
    meta = json.loads((folder / "meta.json").read_text())
    return Recorded(
        folder=folder,
        returncode=meta["returncode"],
        files=frozenset(meta["files"]),
        stdout=(folder / "stdout.txt").read_text(),
        stderr=(folder / "stderr.txt").read_text(),
    )
