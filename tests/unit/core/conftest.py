from __future__ import annotations

from pathlib import Path

import pytest

from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL as WATER


def water_spec(**kw: object) -> JobSpec:
    return JobSpec(molecule=parse_xyz(WATER), **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(tmp_path / "jobs")
    s.ensure()
    return s
