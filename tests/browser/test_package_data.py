"""The page's templates and assets are package data: a wheel (not the editable install
the tests run from) carries every one of them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "controller" / "server"


def test_a_wheel_carries_every_template_and_asset(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("qforge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"qforge/server/{p.relative_to(SERVER)}"
              for folder in ("templates", "static") for p in (SERVER / folder).rglob("*")
              if p.is_file()}
    assert wanted and wanted <= names, sorted(wanted - names)
