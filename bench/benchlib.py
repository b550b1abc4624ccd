"""Shared helpers for the benchmarks in bench/ (not a benchmark itself: `make bench` runs
bench_*.py only). Progress goes to stderr; each benchmark prints one `bench:` line on
stdout."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qforge.record import JobRecord, Status
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench scripts run as `python bench/bench_x.py`

from tests.molecules import (  # noqa: E402 - after the sys.path line above
    ACETONE,
    AMMONIA,
    BENZENE,
    CAFFEINE,
    ETHANE,
    METHANE,
    METHANOL,
    WATER_EXPERIMENTAL,
)

# Small molecules for the pipeline and memory benchmarks (tests/molecules.py). Rough
# starting geometries: every job is an optimisation, so xtb has some real work to do.
MOLECULES: dict[str, str] = {
    "water": WATER_EXPERIMENTAL,
    "methane": METHANE,
    "ammonia": AMMONIA,
    "ethane": ETHANE,
    "methanol": METHANOL,
    "acetone": ACETONE,
    "benzene": BENZENE,
    "caffeine": CAFFEINE,
}


def log(message: str) -> None:
    """A progress line (stderr, so stdout holds only the summary)."""
    print(f"  {message}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


@contextmanager
def scratch_dir(prefix: str, base: str | None = None) -> Iterator[Path]:
    """A temporary folder (under `base`, or QFORGE_BENCH_DIR, or the system temp
    folder), removed afterwards whatever happens."""
    root = base or os.environ.get("QFORGE_BENCH_DIR") or None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        # rm is ~1.5x faster than shutil.rmtree on a store of 100,000 job folders.
        if shutil.which("rm"):
            subprocess.run(["rm", "-rf", "--", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def qforge_command() -> list[str]:
    """The real CLI, from the interpreter running the benchmark (the venv's)."""
    exe = Path(sys.executable).parent / "qforge"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "qforge.cli.main"]


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB, from /proc/<pid>/status; (0, 0) when gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, hwm


def write_file(path: Path, data: bytes) -> None:
    """A plain write (no fsync: these stores are built for one benchmark, then removed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_queued_job(store: JobStore, job_id: str, spec: JobSpec, created_ns: int,
                     created_at: str = "2026-11-29T08:00:00.000000Z") -> None:
    """A QUEUED job as `JobStore.submit` leaves it (metadata.json, input.xyz, queue
    marker), written directly: fast enough for stores of many thousand jobs."""
    record = JobRecord(job_id=job_id, status=Status.QUEUED, created_at=created_at,
                       updated_at=created_at, created_ns=created_ns, spec=spec)
    folder = store.layout.job_dir(job_id)
    os.mkdir(folder)
    write_file(folder / "input.xyz", spec.molecule.to_xyz().encode())
    write_file(folder / "metadata.json", (record.model_dump_json(indent=2) + "\n").encode())
    write_file(store.layout.queue / QueueKey.make(spec.priority, created_ns, job_id).name, b"")
