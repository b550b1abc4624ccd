"""`make demo`: the water test job the worker qforge replaces was checked with, on qforge.

Submits the water test job to a fresh store, runs `qforge worker --until-idle` beside
it, prints every status change with the elapsed time, then the energy and gap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qforge.record import Status
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz

WATER = """3
water
O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
"""
LIMIT_SECONDS = 120.0


def info(message: str) -> None:
    print(f"[INFO] {message}", flush=True)


def main() -> int:
    root = Path(os.environ.get("QFORGE_DEMO_DIR", ".demo"))
    jobs = root / "jobs"
    shutil.rmtree(jobs, ignore_errors=True)
    store = JobStore(jobs)
    info("Creating test job...")
    spec = JobSpec(molecule=parse_xyz(WATER), name="test_water")
    record = store.submit(spec, input_text=WATER)
    info(f"✓ Created test job: {record.job_id}")
    info(f"Running worker for up to {LIMIT_SECONDS:.0f} seconds...")
    env = dict(os.environ, JOBS_DIR=str(jobs), POLL_INTERVAL="1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "qforge.cli.main", "worker", "--until-idle"], env=env)
    start = time.monotonic()
    last: Status | None = None
    try:
        while time.monotonic() - start < LIMIT_SECONDS:
            current = store.read(record.job_id)
            if current.status is not last:
                info(f"[{time.monotonic() - start:.1f}s] Job {record.job_id} status: "
                     f"{current.status.value}")
                last = current.status
            if current.status.terminal:
                record = current
                break
            if worker.poll() is not None:
                info(f"✗ The worker exited (code {worker.returncode}) before the job ended")
                return 1
            time.sleep(0.2)
        else:
            info(f"✗ The job did not finish within {LIMIT_SECONDS:.0f} seconds")
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    if record.status is Status.COMPLETED and record.result is not None:
        info("✓ Job completed successfully!")
        info(f"  Energy: {record.result.energy:.12f} Hartree")
        if record.result.gap is not None:
            info(f"  HOMO-LUMO gap: {record.result.gap:.6f} eV")
        info(f"  Results: {jobs / record.job_id}")
        return 0
    error = f": {record.error.type}: {record.error.message}" if record.error else ""
    info(f"✗ Job ended {record.status.value}{error}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
