"""Failure classification from exit status, output and marker files (recorded runs)."""

from __future__ import annotations

import signal

from qforge_runner.failures import classify_failure
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType, JobError
from qforge_runner.spec import JobSpec
from tests.unit.runner.helpers import HYDROXYL, recorded, water_spec


def _classify(name: str, spec: JobSpec | None = None) -> JobError | None:
    run = recorded(name)
    # the harness sends both streams to one file (xtb.log): the recordings keep them apart
    return classify_failure(run.returncode, run.stdout + run.stderr, run.files,
                            spec or water_spec())


def test_successful_runs_are_not_failures() -> None:
    for name in ("water_gfn2_opt", "water_gfnff_opt", "water_gfn2_ohess"):
        assert _classify(name) is None


def test_optimisation_out_of_cycles_is_a_convergence_error_despite_exit_0() -> None:
    run = recorded("opt_not_converged")
    assert run.returncode == 0 and ".xtboptok" in run.files  # xtb says "ok" ...
    error = _classify("opt_not_converged", water_spec(opt_level="crude"))
    assert error is not None
    assert error.type is ErrorType.convergence_error  # ... qforge does not
    assert error.message.startswith(
        "the geometry optimisation did not converge in 2 cycles (opt level crude)")
    assert "xtbopt.xyz" in error.message


def test_not_converged_marker_file_is_a_convergence_error() -> None:
    run = recorded("water_gfn2_opt")
    error = classify_failure(0, run.stdout + run.stderr, {*run.files, "NOT_CONVERGED"},
                             water_spec())
    assert error is not None and error.type is ErrorType.convergence_error


def test_scc_not_converged() -> None:
    run = recorded("scc_not_converged")
    assert ".sccnotconverged" in run.files
    error = _classify("scc_not_converged", water_spec(task="sp"))
    assert error is not None
    assert error.type is ErrorType.convergence_error
    assert error.message.startswith("the SCC (electronic structure) did not converge: check "
                                    "that charge 0 and uhf 0 fit H2O")
    assert error.detail is not None and "Self consistent charge" in error.detail


def test_scc_marker_file_alone_is_enough() -> None:
    error = classify_failure(1, "", {".sccnotconverged"}, water_spec())
    assert error is not None and error.type is ErrorType.convergence_error


def test_unreadable_geometry_is_an_input_error() -> None:
    error = _classify("bad_geometry")
    assert error is not None
    assert error.type is ErrorType.input_error
    assert error.message == ("xtb rejected the input: Error: Atom number missmatch in xyz file")


def test_unknown_solvent_is_an_input_error() -> None:
    error = _classify("bad_solvent")
    assert error is not None and error.type is ErrorType.input_error
    assert "'nosuchsolvent' is not parametrized" in error.message


def test_missing_parameter_files_are_an_infrastructure_error() -> None:
    error = _classify("gfn0_no_parameters", water_spec(method="gfn0"))
    assert error is not None
    assert error.type is ErrorType.infrastructure_error
    assert "param_gfn0-xtb.txt not found" in error.message and "XTBPATH" in error.message


def test_crash_of_a_linear_molecule_hessian() -> None:
    run = recorded("linear_hess_crash")
    assert run.returncode == -signal.SIGABRT
    spec = JobSpec(molecule=parse_xyz(HYDROXYL), uhf=1, task="hess")
    error = _classify("linear_hess_crash", spec)
    assert error is not None
    assert error.type is ErrorType.xtb_error
    assert error.message.startswith("xtb crashed (stack smashing detected); xtb 6.5 is known")
    assert error.detail is not None and "0x" not in error.detail  # no backtrace addresses


def test_a_crash_without_a_known_cause() -> None:
    error = classify_failure(-signal.SIGSEGV, "", set(), water_spec())
    assert error == JobError(type=ErrorType.xtb_error, message="xtb crashed (SIGSEGV)")


def test_sigkill_and_allocation_failures_are_resource_errors() -> None:
    killed = classify_failure(-signal.SIGKILL, "", set(), water_spec(memory="128Mi"))
    assert killed is not None and killed.type is ErrorType.resource_error
    assert "killed by SIGKILL" in killed.message and "memory=128Mi" in killed.message
    alloc = classify_failure(1, "Operating system error: Cannot allocate memory\n"
                             "Allocation would exceed memory limit\n", set(), water_spec())
    assert alloc is not None and alloc.type is ErrorType.resource_error


def test_other_errors_are_xtb_errors_with_the_root_cause() -> None:
    stdout = ("####\n[ERROR] Program stopped due to fatal error\n"
              "-2- outer context\n-1- something odd happened\n####\n")
    error = classify_failure(1, stdout, set(), water_spec())
    assert error is not None and error.type is ErrorType.xtb_error
    assert error.message == "xtb stopped with an error: something odd happened"
    bare = classify_failure(3, "", set(), water_spec())
    assert bare == JobError(type=ErrorType.xtb_error, message="xtb exited with status 3")
