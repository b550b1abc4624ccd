from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.xtb

WATER = """3
water
O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
"""

# Caffeine: big enough that an ohess takes a few seconds on one core.
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

if shutil.which("xtb") is None:  # pragma: no cover - CI installs xtb
    pytest.skip("Debian's xtb is not installed", allow_module_level=True)


def qforge(*args: str, jobs: Path, stdin: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, JOBS_DIR=str(jobs), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args], input=stdin, text=True,
        capture_output=True, env=full_env, timeout=timeout, check=False)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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
            [sys.executable, "-m", "controller.cli.main", "worker", *args],
            env=dict(os.environ, JOBS_DIR=str(jobs), **(env or {})),
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
