"""Result models, the metadata summary, and the QCSchema export (checked by qcelemental)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qforge_runner.harness import collect_result
from qforge_runner.molecule import BOHR_TO_ANGSTROM
from qforge_runner.result import ErrorType, JobError, JobResult, Quality, RunReport, to_qcschema
from qforge_runner.spec import JobSpec
from tests.unit.runner.helpers import recorded, water_spec

qcel = pytest.importorskip("qcelemental")

STARTED, FINISHED = "2026-11-28T13:30:39.000000Z", "2026-11-28T13:30:40.000000Z"


def _report(result: JobResult | None = None, error: JobError | None = None) -> RunReport:
    return RunReport(success=result is not None, result=result, error=error, job_id="water_1",
                     started_at=STARTED, finished_at=FINISHED)


def _water_opt(tmp_path: Path, **spec_fields: Any) -> tuple[JobSpec, JobResult]:
    spec = water_spec(**spec_fields)
    run = recorded("water_gfn2_opt")
    return spec, collect_result(run.scratch(tmp_path), run.stdout, spec, 0.25)


def test_summary_is_small_and_flat(tmp_path: Path) -> None:
    _, result = _water_opt(tmp_path)
    summary = result.summary()
    assert summary.energy == pytest.approx(-5.0705442, abs=1e-6)
    assert summary.gap == pytest.approx(14.37, abs=0.01)
    assert summary.converged is True
    assert summary.formula == "H2O"
    assert summary.method == "gfn2" and summary.task == "opt"
    assert summary.wall_time == 0.25
    assert summary.dipole_debye == pytest.approx(2.219, abs=0.001)  # xtb prints 2.218
    assert summary.quality.ok is True
    data = summary.model_dump(mode="json")
    assert "geometry" not in data and "partial_charges" not in data
    json.dumps(data)  # plain JSON


def test_report_round_trips_as_result_json(tmp_path: Path) -> None:
    _, result = _water_opt(tmp_path)
    report = _report(result)
    again = RunReport.model_validate(json.loads(json.dumps(report.model_dump(mode="json"))))
    assert again == report


def test_report_must_be_consistent() -> None:
    error = JobError(type=ErrorType.timeout, message="too slow")
    with pytest.raises(ValidationError, match="a failed report has an error"):
        RunReport(success=False, started_at=STARTED, finished_at=FINISHED)
    with pytest.raises(ValidationError, match="a successful report has a result"):
        RunReport(success=True, error=error, started_at=STARTED, finished_at=FINISHED)
    failed = _report(error=error)
    assert failed.error is not None and failed.error.type is ErrorType.timeout


def test_models_accept_the_controllers_minimal_construction() -> None:
    result = JobResult(
        energy=-5.0705444, gap=14.38, dipole=None, partial_charges=None, geometry=None,
        frequencies=None, converged=True, xtb_version="6.5.1", method="gfn2", task="opt",
        wall_time=0.1, quality=Quality(converged=True, gap_ok=True, ok=True))
    assert result.summary().formula is None
    assert [e.value for e in ErrorType] == [
        "input_error", "convergence_error", "timeout", "resource_error", "xtb_error",
        "infrastructure_error", "cancelled"]


def test_qcschema_of_an_opt_validates_with_qcelemental(tmp_path: Path) -> None:
    spec, result = _water_opt(tmp_path)
    data = to_qcschema(spec, _report(result))
    atomic = qcel.models.AtomicResult(**data)
    assert atomic.success is True
    assert atomic.driver == "energy"
    assert atomic.model.method == "GFN2-xTB"
    assert atomic.return_result == pytest.approx(result.energy)
    assert atomic.properties.return_energy == pytest.approx(result.energy)
    assert atomic.provenance.creator == "qforge"
    # the molecule is the optimised geometry, in bohr
    assert result.geometry is not None
    assert atomic.molecule.geometry[1][1] == pytest.approx(
        result.geometry.geometry[1][1] / BOHR_TO_ANGSTROM, abs=1e-7)  # qcel: 8 decimals
    assert atomic.molecule.molecular_multiplicity == 1
    assert data["extras"]["qforge"]["homo_lumo_gap_ev"] == result.gap


def test_qcschema_of_a_radical_cation_and_solvent(tmp_path: Path) -> None:
    spec, result = _water_opt(tmp_path, charge=1, uhf=1, solvent="water")
    atomic = qcel.models.AtomicResult(**to_qcschema(spec, _report(result)))
    assert atomic.molecule.molecular_charge == 1
    assert atomic.molecule.molecular_multiplicity == 2
    assert atomic.keywords["alpb_solvent"] == "water"


def test_qcschema_of_a_frequency_run_is_the_energy_with_its_frequencies(
        tmp_path: Path) -> None:
    spec = water_spec(task="ohess")
    run = recorded("water_gfn2_ohess")
    result = collect_result(run.scratch(tmp_path), run.stdout, spec, 1.0)
    data = to_qcschema(spec, _report(result))
    atomic = qcel.models.AtomicResult(**data)
    assert atomic.driver == "energy"
    assert atomic.return_result == pytest.approx(result.energy)
    assert data["extras"]["qforge"]["frequencies_cm-1"] == pytest.approx(
        [1540.86, 3638.12, 3646.41], abs=0.01)


def test_qcschema_of_gfnff_has_no_dipole(tmp_path: Path) -> None:
    spec = water_spec(method="gfnff")
    run = recorded("water_gfnff_opt")
    result = collect_result(run.scratch(tmp_path), run.stdout, spec, 0.1)
    atomic = qcel.models.AtomicResult(**to_qcschema(spec, _report(result)))
    assert atomic.model.method == "GFN-FF"
    assert atomic.properties.scf_dipole_moment is None


def test_qcschema_of_a_failure_is_a_failed_operation() -> None:
    spec = water_spec()
    error = JobError(type=ErrorType.convergence_error, message="did not converge",
                     detail="tail")
    data = to_qcschema(spec, _report(error=error))
    failed = qcel.models.FailedOperation(**data)
    assert failed.success is False
    assert failed.error.error_type == "convergence_error"
    assert failed.error.error_message == "did not converge"
    assert failed.error.extras == {"qforge_error_type": "convergence_error", "detail": "tail"}
    assert data["input_data"]["molecule"]["symbols"] == ["O", "H", "H"]
    qcel.models.AtomicInput(**data["input_data"])
    timeout = to_qcschema(spec, _report(error=JobError(type=ErrorType.timeout, message="t")))
    assert timeout["error"]["error_type"] == "resource_error"
