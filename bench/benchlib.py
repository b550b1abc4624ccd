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

from controller.record import JobRecord, Status
from controller.store.jobstore import JobStore
from controller.store.layout import QueueKey
from runner_image.spec import JobSpec

REPO = Path(__file__).resolve().parent.parent

# Small molecules for the pipeline and memory benchmarks (Ångström). Rough starting
# geometries: every job is an optimisation, so xtb has some real work to do.
MOLECULES: dict[str, str] = {
    "water": """3
water
O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
""",
    "methane": """5
methane
C   0.000000   0.000000   0.000000
H   0.629118   0.629118   0.629118
H  -0.629118  -0.629118   0.629118
H  -0.629118   0.629118  -0.629118
H   0.629118  -0.629118  -0.629118
""",
    "ammonia": """4
ammonia
N   0.000000   0.000000   0.116489
H   0.000000   0.939731  -0.271808
H   0.813831  -0.469865  -0.271808
H  -0.813831  -0.469865  -0.271808
""",
    "ethane": """8
ethane
C   0.000000   0.000000   0.765000
C   0.000000   0.000000  -0.765000
H   1.018000   0.000000   1.164000
H  -0.509000   0.881600   1.164000
H  -0.509000  -0.881600   1.164000
H  -1.018000   0.000000  -1.164000
H   0.509000  -0.881600  -1.164000
H   0.509000   0.881600  -1.164000
""",
    "methanol": """6
methanol
C  -0.046520   0.662050   0.000000
O  -0.046520  -0.755950   0.000000
H  -1.086520   0.976050   0.000000
H   0.437480   1.070050   0.889000
H   0.437480   1.070050  -0.889000
H   0.861480  -1.064950   0.000000
""",
    "acetone": """10
acetone
C   0.000000   0.000000   0.178000
O   0.000000   0.000000   1.395000
C   1.283000   0.000000  -0.617000
C  -1.283000   0.000000  -0.617000
H   2.140000   0.000000   0.053000
H   1.321000   0.880000  -1.262000
H   1.321000  -0.880000  -1.262000
H  -2.140000   0.000000   0.053000
H  -1.321000  -0.880000  -1.262000
H  -1.321000   0.880000  -1.262000
""",
    "benzene": """12
benzene
C   0.000000   1.396792   0.000000
C   1.209657   0.698396   0.000000
C   1.209657  -0.698396   0.000000
C   0.000000  -1.396792   0.000000
C  -1.209657  -0.698396   0.000000
C  -1.209657   0.698396   0.000000
H   0.000000   2.484212   0.000000
H   2.151390   1.242106   0.000000
H   2.151390  -1.242106   0.000000
H   0.000000  -2.484212   0.000000
H  -2.151390  -1.242106   0.000000
H  -2.151390   1.242106   0.000000
""",
    "caffeine": """24
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
""",
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
    return [sys.executable, "-m", "controller.cli.main"]


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
