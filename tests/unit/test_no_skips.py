"""tests/conftest.py: under `make test` (QFORGE_NO_SKIPS=1) a skip fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pytest(tmp_path: Path, body: str, no_skips: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "QFORGE_NO_SKIPS"}
    if no_skips is not None:
        env["QFORGE_NO_SKIPS"] = no_skips
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False)


SKIPS = "import pytest\n\ndef test_a():\n    pytest.skip('no tool')\n\ndef test_b():\n    pass\n"


def test_a_skip_fails_the_run_under_make(tmp_path: Path) -> None:
    run = _pytest(tmp_path, SKIPS, "1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "QFORGE_NO_SKIPS=1: 1 test(s) skipped" in run.stdout


def test_a_skip_is_only_a_skip_elsewhere(tmp_path: Path) -> None:
    run = _pytest(tmp_path, SKIPS, None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout


def test_a_clean_run_passes_under_make(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "def test_ok():\n    pass\n", "1")
    assert run.returncode == 0, run.stdout + run.stderr
