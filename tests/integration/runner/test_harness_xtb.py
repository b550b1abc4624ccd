"""run_job with the real xtb: energies equal direct xtb runs; failures are typed."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qforge_runner import harness
from qforge_runner.harness import RunConfig, run_job
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType, RunReport
from qforge_runner.spec import JobSpec
from tests.integration.runner.helpers import direct_energy, group_gone, needs_xtb, wrapper
from tests.molecules import AMMONIUM, METHANE_DISTORTED, METHYL, WATER, water_cluster
from tests.waiting import wait_until

pytestmark = needs_xtb


def _spec(xyz: str = WATER, **fields: object) -> JobSpec:
    return JobSpec(molecule=parse_xyz(xyz), **fields)


def _run(tmp_path: Path, spec: JobSpec, **kw: object) -> tuple[RunReport, Path]:
    job_dir = tmp_path / "job"
    scratch = tmp_path / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    report = run_job(job_dir, spec, RunConfig(scratch_root=scratch, **kw),  # type: ignore[arg-type]
                     job_id="test_job")
    assert list(scratch.iterdir()) == []  # the scratch folder is removed
    on_disk = RunReport.model_validate_json((job_dir / "result.json").read_text())
    assert on_disk == report  # result.json holds exactly the report
    return report, job_dir


def _energy_matches_direct_xtb(tmp_path: Path, spec: JobSpec) -> RunReport:
    report, _ = _run(tmp_path, spec)
    assert report.success, report.error
    assert report.result is not None
    assert report.result.energy == pytest.approx(direct_energy(spec, tmp_path / "direct"),
                                                 abs=1e-6)
    return report


def test_water_gfn2_opt(tmp_path: Path) -> None:
    spec = _spec(name="water")
    report = _energy_matches_direct_xtb(tmp_path, spec)
    result = report.result
    assert result is not None
    assert result.energy == pytest.approx(-5.0705444, abs=1e-6)
    assert result.gap == pytest.approx(14.38, abs=0.01)
    assert result.converged and result.quality.ok and not result.quality.from_text_output
    assert result.geometry is not None and result.geometry.formula == "H2O"
    assert result.partial_charges is not None and len(result.partial_charges) == 3
    assert result.xtb_version is not None and result.xtb_version.startswith("6.")
    assert (report.job_id, report.error) == ("test_job", None)
    job = tmp_path / "job"
    for name in ("xtbout.json", "xtbopt.xyz", "xtb.log", "charges", "wbo"):
        assert (job / name).is_file(), name
    assert "TOTAL ENERGY" in (job / "xtb.log").read_text()


def test_the_slot_is_freed_when_xtb_exits_before_its_output_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """on_calculation_end (a worker refills the slot there) comes the moment xtb has
    exited: before its output is parsed and long before the results are saved."""
    events: list[str] = []
    parse = harness.parse_text_output

    def parse_and_note(text: str) -> object:
        events.append("parsed")
        return parse(text)

    monkeypatch.setattr(harness, "parse_text_output", parse_and_note)
    job_dir = tmp_path / "job"
    report = run_job(job_dir, _spec(), RunConfig(
        scratch_root=tmp_path,
        on_calculation_end=lambda: events.append(
            "ended, result.json there" if (job_dir / "result.json").exists() else "ended")))
    assert report.success, report.error
    assert events == ["ended", "parsed"]


def test_charged_species_ammonium(tmp_path: Path) -> None:
    report = _energy_matches_direct_xtb(tmp_path, _spec(AMMONIUM, charge=1))
    assert report.result is not None and report.result.quality.ok
    assert sum(report.result.partial_charges or ()) == pytest.approx(1.0, abs=1e-3)


def test_radical_methyl(tmp_path: Path) -> None:
    report = _energy_matches_direct_xtb(tmp_path, _spec(METHYL, uhf=1))
    assert report.result is not None and report.result.quality.ok


def test_alpb_water_solvent(tmp_path: Path) -> None:
    solvated = _energy_matches_direct_xtb(tmp_path / "alpb", _spec(solvent="water", task="sp"))
    gas, _ = _run(tmp_path / "gas", _spec(task="sp"))
    assert solvated.result is not None and gas.result is not None
    assert solvated.result.energy < gas.result.energy  # water is stabilised in water


def test_gfn1_single_point(tmp_path: Path) -> None:
    report = _energy_matches_direct_xtb(tmp_path, _spec(method="gfn1", task="sp"))
    assert report.result is not None
    assert report.result.geometry is None and report.result.frequencies is None


def test_gfn0_single_point_finds_its_parameter_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XTBPATH", raising=False)  # the harness finds <prefix>/share/xtb
    report = _energy_matches_direct_xtb(tmp_path, _spec(method="gfn0", task="sp"))
    assert report.result is not None and report.result.gap is not None


def test_ohess_frequencies_of_water(tmp_path: Path) -> None:
    report = _energy_matches_direct_xtb(tmp_path, _spec(task="ohess"))
    result = report.result
    assert result is not None and result.frequencies is not None
    assert len(result.frequencies) == 3 * 3 - 6
    assert all(f > 0 for f in result.frequencies)
    assert result.quality.imaginary_frequencies == 0 and result.quality.ok
    for name in ("vibspectrum", "hessian", "g98.out"):
        assert (tmp_path / "job" / name).is_file(), name


def test_gfnff_opt_completes_from_the_text_output(tmp_path: Path) -> None:
    report = _energy_matches_direct_xtb(tmp_path, _spec(method="gfnff"))
    result = report.result
    assert result is not None
    assert result.quality.from_text_output is True
    assert result.quality.ok is True
    assert result.gap is None and result.geometry is not None
    assert not (tmp_path / "job" / "xtbout.json").exists()


def test_non_converging_opt_is_a_convergence_error(tmp_path: Path) -> None:
    xcontrol = tmp_path / "xcontrol"
    xcontrol.write_text("$opt\n   maxcycle=2\n$end\n")
    script, _ = wrapper(tmp_path, extra=f'--input "{xcontrol}"')
    report, job = _run(tmp_path, _spec(METHANE_DISTORTED), xtb=str(script))
    assert not report.success and report.error is not None
    assert report.error.type is ErrorType.convergence_error
    assert "did not converge in 2 cycles" in report.error.message
    assert (job / "xtbopt.xyz").is_file()  # the last geometry, to restart from


def test_scc_that_does_not_converge_is_a_convergence_error(tmp_path: Path) -> None:
    xcontrol = tmp_path / "xcontrol"
    xcontrol.write_text("$scc\n   maxiterations=2\n$end\n")
    script, _ = wrapper(tmp_path, extra=f'--input "{xcontrol}"')
    report, _ = _run(tmp_path, _spec(task="sp"), xtb=str(script))
    assert report.error is not None and report.error.type is ErrorType.convergence_error
    assert report.error.message.startswith("the SCC (electronic structure) did not converge")


def test_timeout_kills_xtbs_process_group(tmp_path: Path) -> None:
    script, pid_file = wrapper(tmp_path)
    report, job = _run(tmp_path, _spec(water_cluster(), task="ohess"), timeout=1.0,
                       xtb=str(script))
    assert not report.success and report.error is not None
    assert report.error.type is ErrorType.timeout
    assert "time limit of 1 s" in report.error.message
    pgid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # no process of xtb's group is left
        os.killpg(pgid, 0)
    assert (job / "xtb.log").is_file()  # what xtb printed before it was stopped


def test_the_smallest_of_the_timeouts_applies(tmp_path: Path) -> None:
    spec = _spec(water_cluster(), task="ohess", timeout=1.0)
    report, _ = _run(tmp_path, spec, timeout=3600, xtb_timeout=300)
    assert report.error is not None and report.error.type is ErrorType.timeout
    assert "time limit of 1 s" in report.error.message


def test_cancel_stops_xtb(tmp_path: Path) -> None:
    script, pid_file = wrapper(tmp_path)
    cancel = threading.Event()
    reports: list[RunReport] = []
    thread = threading.Thread(target=lambda: reports.append(
        _run(tmp_path, _spec(water_cluster(), task="ohess"), cancel=cancel,
             xtb=str(script))[0]))
    thread.start()
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "xtb to start")
    cancel.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    report = reports[0]
    assert report.error is not None and report.error.type is ErrorType.cancelled
    assert group_gone(int(pid_file.read_text()))


def test_concurrent_runs_in_threads_do_not_mix(tmp_path: Path) -> None:
    """The local worker runs several jobs at once in one process, as threads."""
    specs = {"water": _spec(task="sp"), "ammonium": _spec(AMMONIUM, charge=1, task="sp"),
             "methyl": _spec(METHYL, uhf=1, task="sp")}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_job, tmp_path / name, spec,
                                     RunConfig(scratch_root=tmp_path), job_id=name)
                   for name, spec in specs.items()}
        reports = {name: future.result(timeout=300) for name, future in futures.items()}
    for name, spec in specs.items():
        report = reports[name]
        assert report.success and report.result is not None and report.job_id == name
        assert report.result.formula == spec.molecule.formula
        assert report.result.energy == pytest.approx(
            direct_energy(spec, tmp_path / f"direct-{name}"), abs=1e-6)


def test_missing_xtb_is_an_infrastructure_error(tmp_path: Path) -> None:
    report, _ = _run(tmp_path, _spec(), xtb="/nonexistent/xtb")
    assert report.error is not None
    assert report.error.type is ErrorType.infrastructure_error
    assert "'/nonexistent/xtb' was not found" in report.error.message


def test_stale_result_and_artifacts_of_an_earlier_attempt_are_replaced(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "result.json").write_text(json.dumps({"stale": True}))
    (job / "vibspectrum").write_text("stale\n")
    report, _ = _run(tmp_path, _spec(task="sp"))
    assert report.success
    assert not (job / "vibspectrum").exists()


def test_an_unwritable_scratch_root_is_an_infrastructure_error(tmp_path: Path) -> None:
    report = run_job(tmp_path / "job", _spec(),
                     RunConfig(scratch_root=tmp_path / "missing" / "scratch"))
    assert report.error is not None and report.error.type is ErrorType.infrastructure_error
    assert "cannot create a scratch folder" in report.error.message
