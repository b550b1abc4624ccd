from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None:  # pragma: no cover - CI installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)


def qforge(*args: str, jobs: Path, stdin: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, JOBS_DIR=str(jobs), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "qforge.cli.main", *args], input=stdin, text=True,
        capture_output=True, env=full_env, timeout=timeout, check=False)


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def start_worker(jobs: Path, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, log_name: str = "worker.log",
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(tmp_path / log_name, "w")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [sys.executable, "-m", "qforge.cli.main", "worker", *args],
            env=dict(os.environ, JOBS_DIR=str(jobs), **(env or {})),
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
