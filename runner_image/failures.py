"""Why an xtb run failed, from its exit status, its output and its marker files.

xtb 6.5 leaves these traces (recorded in tests/unit/runner/fixtures):

- an SCC that does not converge: the file ``.sccnotconverged``, an ``[ERROR]`` block
  ending in "Self consistent charge iterator did not converge", exit status 1;
- an optimisation that runs out of cycles: "FAILED TO CONVERGE GEOMETRY OPTIMIZATION
  IN n ITERATIONS" and exit status **0** (``.xtboptok`` is even written); when the
  optimiser gives up for other reasons, the file ``NOT_CONVERGED``;
- input it cannot use: an ``[ERROR]`` block ("reading geometry input ... failed",
  "solvent: 'x' is not parametrized", ...), "abnormal termination of xtb", status 1;
- a crash: a signal (SIGSEGV, SIGABRT "stack smashing detected") and a Fortran backtrace.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Collection
from typing import Final

from qforge_runner.result import ErrorType, JobError
from qforge_runner.spec import JobSpec, Task
from qforge_runner.xtb_output import TextOutput, is_linear, parse_text_output, tail

_MEMORY: Final = re.compile(
    r"cannot allocate memory|out of memory|memoryerror|enomem|could not be allocated|"
    r"allocation would exceed memory limit|insufficient virtual memory",
)
_SCC: Final = re.compile(
    r"self consistent charge iterator did not converge|scc not converged|scf not converged",
)
_INPUT: Final = re.compile(
    r"reading geometry|could not read geometry|could not read coordinates|"
    r"argument parsing|no input file|not parametri[sz]ed|missmatch|mismatch|unknown element|"
    r"invalid|could not read hessian",
    re.I,
)
_PARAMETERS: Final = re.compile(r"parameter file .* not found|could not open parameter file", re.I)


# How the message of an SCC that did not converge begins (the retry ladder tells it from
# a geometry optimisation that did not converge by it).
SCC_NOT_CONVERGED: Final = "the SCC (electronic structure) did not converge"


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def classify_failure(
    returncode: int, output: str, files: Collection[str], spec: JobSpec, *,
    parsed: TextOutput | None = None,
) -> JobError | None:
    """The typed error of a finished xtb run, or None when it succeeded.

    `output` is xtb's standard output and error, interleaved as printed (the harness
    sends both to xtb.log); `files` are the names in xtb's working folder (for the marker
    files); `parsed` is `output` already parsed.
    """
    out = parsed or parse_text_output(output)
    root = out.errors[-1] if out.errors else None
    end = tail(output, 40)
    detail = tail(end, 30) or None
    # Where xtb and the Fortran runtime say why they stopped: the [ERROR]/[WARNING] blocks
    # and the end of the output (searching all of a long output would cost more than xtb).
    text = "\n".join((*out.errors, *out.warnings, end)).lower()

    if _MEMORY.search(text) or (returncode == -signal.SIGKILL):
        reason = root or (
            "xtb was killed by SIGKILL" if returncode == -signal.SIGKILL
            else "xtb could not allocate memory")
        return JobError(
            type=ErrorType.resource_error,
            message=f"out of memory? {reason}; give the job more memory "
            f"(memory={spec.memory or 'unset'}) or use a smaller molecule or task",
            detail=detail,
        )
    if ".sccnotconverged" in files or _SCC.search(text):
        optimising = spec.task in (Task.opt, Task.ohess) and "CYCLE" in output
        where = " during the geometry optimisation" if optimising else ""
        return JobError(
            type=ErrorType.convergence_error,
            message=f"{SCC_NOT_CONVERGED}{where}: check that "
            f"charge {spec.charge} and uhf {spec.uhf} fit {spec.molecule.formula}, or try "
            "another method or a more reasonable starting geometry",
            detail=detail,
        )
    if "NOT_CONVERGED" in files or out.opt_converged is False:
        cycles = f" in {out.opt_cycles} cycles" if out.opt_cycles else ""
        return JobError(
            type=ErrorType.convergence_error,
            message=f"the geometry optimisation did not converge{cycles} (opt level "
            f"{spec.opt_level.value}); its last geometry is in xtbopt.xyz: restart from it, "
            "or use a looser opt level",
            detail=detail,
        )
    if returncode == 0:
        return None
    if root and _PARAMETERS.search(root):
        return JobError(
            type=ErrorType.infrastructure_error,
            message=f"xtb cannot find its parameter files ({root}); set XTBPATH to the folder "
            "that holds them (Debian: /usr/share/xtb)",
            detail=detail,
        )
    if root and any(_INPUT.search(line) for line in out.errors):
        return JobError(type=ErrorType.input_error, message=f"xtb rejected the input: {root}",
                        detail=detail)
    if returncode < 0:
        name = _signal_name(returncode)
        what = "stack smashing detected" if "stack smashing" in text else name
        hint = ""
        if spec.task in (Task.hess, Task.ohess) and is_linear(spec.molecule.geometry):
            hint = ("; xtb 6.5 is known to crash in the frequency step of linear molecules: "
                    "run task opt or sp instead")
        return JobError(type=ErrorType.xtb_error, message=f"xtb crashed ({what}){hint}",
                        detail=detail)
    message = f"xtb stopped with an error: {root}" if root else (
        f"xtb exited with status {returncode}")
    return JobError(type=ErrorType.xtb_error, message=message, detail=detail)
