"""Jobs in every state, written through the store's own transitions (no xtb)."""

from __future__ import annotations

from typing import Any

from qforge.cli.main import main
from qforge.record import JobRecord, Placement, Status
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import JobError
from qforge_runner.spec import JobSpec
from qforge_runner.timestamps import utcnow
from tests.molecules import AMMONIA, METHANE, WATER_EXPERIMENTAL

HERE = Placement(executor="local", worker_id="w", instance="w-1")
# A few small molecules by name, for the command-line tests of campaigns, delete, retry.
MOLECULES = {"water": WATER_EXPERIMENTAL, "methane": METHANE, "ammonia": AMMONIA}


def spec(name: str) -> JobSpec:
    return JobSpec(molecule=parse_xyz(MOLECULES[name]), name=name)


def qf(store: JobStore, *argv: str) -> int:
    """`qforge --jobs-dir <store> ARGV...` in this process: its exit code."""
    return main(["--jobs-dir", str(store.root), *argv])


def summary(energy: float, *, gap: float | None = 10.5, imaginary: int = 0) -> dict[str, Any]:
    return {"energy": energy, "gap": gap, "converged": True, "formula": "H2O",
            "method": "gfn2", "task": "opt", "wall_time": 0.25, "xtb_version": "6.5.1",
            "dipole_debye": 2.1685,
            "quality": {"ok": imaginary == 0, "converged": True, "gap_ok": True,
                        "imaginary_frequencies": imaginary, "from_text_output": False,
                        "warnings": []}}


def finish(store: JobStore, job_id: str, status: Status, **changes: Any) -> JobRecord:
    """Claim a queued job and record it `status` as a scheduler does."""
    record = store.read(job_id)
    key = QueueKey.make(record.spec.priority, record.created_ns, job_id)
    claimed = store.queue.claim(key, "w-1", HERE)
    if claimed is None:
        raise AssertionError(f"could not claim {job_id}")
    if status is Status.RUNNING:
        return claimed.record
    if status is Status.COMPLETED:
        changes.setdefault("result", summary(-5.07))
    elif "error" not in changes:
        kind = "cancelled" if status is Status.CANCELLED else "xtb_error"
        changes["error"] = JobError(type=kind, message=f"{kind} on purpose")
    done = claimed.record.evolve(status=status, finished_at=utcnow(), **changes)
    store.queue.finish(claimed, done)
    return done
