"""The pipeline benchmark's ceiling (bench/lean_worker.py) does the work it claims: every
job COMPLETED with xtb's energy, its optimised geometry kept, the claims and the scratch
folders gone. Both record codecs."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.integration.runner.helpers import direct_energy, needs_xtb
from tests.molecules import AMMONIA, WATER

pytestmark = needs_xtb

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def bench_pipeline() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_pipeline
        yield bench_pipeline
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("records", ["pydantic", "plain"])
def test_lean_worker_completes_every_job(bench_pipeline: ModuleType, tmp_path: Path,
                                         records: str) -> None:
    specs = {"water": JobSpec(molecule=parse_xyz(WATER)),
             "ammonia": JobSpec(molecule=parse_xyz(AMMONIA))}
    jobs = [(name, specs[name]) for name in ("water", "ammonia", "water")]
    xtb = shutil.which("xtb")
    assert xtb is not None
    root = tmp_path / "lean"
    elapsed = bench_pipeline.through_lean(jobs, root, xtb, records)
    assert elapsed > 0
    expected = {name: direct_energy(spec, tmp_path / f"direct-{name}")
                for name, spec in specs.items()}
    for i, (name, _) in enumerate(jobs):
        job_dir = root / "jobs" / f"{i:04d}"
        record = json.loads((job_dir / "record.json").read_text())
        assert record["status"] == "COMPLETED"
        assert record["energy"] == pytest.approx(expected[name], abs=1e-6)
        assert parse_xyz((job_dir / "xtbopt.xyz").read_text()).symbols \
            == specs[name].molecule.symbols
    assert list((root / "queue").iterdir()) == []
    assert list((root / "running").iterdir()) == []
    assert list((root / "scratch").iterdir()) == []
