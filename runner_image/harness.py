"""The xtb harness: build the input, run xtb, parse, assess, write result.json.

A run is two steps around xtb: `begin` prepares the scratch folder and starts xtb
without waiting, `conclude` reads what it left and writes the report. `run_job` does
both with a blocking wait in between: ``qforge-runner`` in a runner pod uses it. The
local worker keeps many runs on its one thread: it starts them with `begin`, waits on
their pidfds together with the store, and concludes each when it exits
(qforge.scheduling.local). Neither step raises for anything a calculation can do: every
outcome, including our own crashes, becomes a `RunReport` that is also written to
``JOB_DIR/result.json``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from qforge_runner.atomic import write_files_atomic
from qforge_runner.collect import OutputError, collect_result, read_text
from qforge_runner.environment import xtb_environment
from qforge_runner.failures import classify_failure
from qforge_runner.preopt import preoptimise
from qforge_runner.process import Child, ProcessOutcome, find_program, watch
from qforge_runner.result import ErrorType, JobError, JobResult, RunReport
from qforge_runner.spec import XCONTROL_FILE, JobSpec
from qforge_runner.timestamps import utcnow
from qforge_runner.xtb_output import parse_text_output, tail

logger = logging.getLogger(__name__)

RESULT_FILE: Final = "result.json"
# The start of the error of a run whose results the job folder could not take (a full
# or read-only store): the calculation is worth running again, not a failure.
RESULTS_UNWRITABLE: Final = "cannot write the results into"
# xtb writes the final geometry displaced along its imaginary mode here when a Hessian
# finds one (a saddle point): the retry ladder's start for the next attempt.
SADDLE_DISPLACED: Final = "xtbhess.xyz"
INPUT_FILE: Final = "input.xyz"  # in the scratch folder; the job folder's input.xyz is the user's
OUTPUT_FILE: Final = "xtb.log"  # xtb's standard output and error, interleaved as printed
# What is copied from the scratch folder into the job folder, when xtb wrote it.
ARTIFACTS: Final = (
    "xtbout.json", "xtbopt.xyz", "xtbopt.log", OUTPUT_FILE, "charges", "wbo", "gfnff_charges",
    "vibspectrum", "hessian", "g98.out", "NOT_CONVERGED",
    SADDLE_DISPLACED,
)  # fmt: skip


def _deadline(*limits: float | None) -> float | None:
    given = [t for t in limits if t is not None]
    return min(given) if given else None


def artifacts(scratch: Path, job_dir: Path) -> list[tuple[Path, Path]]:
    """``(destination, source)`` of xtb's files to move into the job folder. Stale copies
    of an earlier attempt that this run did not write are removed. (One listing of each
    folder, not a stat per name: this runs for every job.)"""
    def files(folder: Path) -> set[str]:
        try:
            with os.scandir(folder) as entries:
                return {e.name for e in entries if e.is_file()}
        except FileNotFoundError:
            return set()

    written, present = files(scratch), files(job_dir)
    items = []
    for name in ARTIFACTS:
        if name in written:
            items.append((job_dir / name, scratch / name))
        elif name in present:
            (job_dir / name).unlink(missing_ok=True)
    return items


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:40] or "job"


class _Stop(Exception):
    """The run ends early with this error (no xtb, no scratch folder, cancelled...)."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.message)
        self.error = error


def _make_scratch(scratch_root: Path | None, label: str) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f"qforge-{_safe(label)}-", dir=scratch_root)).resolve()
    except OSError as exc:  # also: no usable temp folder at all (read-only root file system)
        where = scratch_root or os.environ.get("TMPDIR") or "the temp folder"
        raise _Stop(JobError(
            type=ErrorType.infrastructure_error,
            message=f"cannot create a scratch folder in {where}: {exc.strerror or exc} "
            "(set QFORGE_SCRATCH or TMPDIR to a writable folder)",
        )) from None


@dataclass(frozen=True)
class RunConfig:
    """How the harness runs a calculation (not what: that is the JobSpec), one object
    rather than many keyword arguments. In-process only (never written anywhere)."""

    # a fresh scratch folder is made under it for each run (None: $TMPDIR)
    scratch_root: Path | None = None
    # seconds; the deadline is the smallest of these and the spec's own (None: no limit)
    timeout: float | None = None
    xtb_timeout: float | None = None
    # set: the run is stopped (SIGTERM, then SIGKILL to xtb's process group)
    cancel: threading.Event | None = None
    xtb: str = "xtb"  # the program, a name on PATH or a path
    log: logging.Logger | None = None


@dataclass
class Calculation:
    """One run of a job between `begin` and `conclude`: xtb started (`child`), or the
    reason it was not (`error`)."""

    job_dir: Path
    spec: JobSpec
    label: str
    job_id: str | None
    log: logging.Logger
    started: str  # ISO-8601 UTC
    scratch: Path | None = None
    deadline: float | None = None  # seconds xtb may run (None: no limit)
    child: Child | None = None
    error: JobError | None = None


def begin(job_dir: Path, spec: JobSpec, config: RunConfig | None = None, *,
          job_id: str | None = None) -> Calculation:
    """Prepare the run of `spec` for the job folder `job_dir` and start xtb, without
    waiting for it: a fresh scratch folder under `config.scratch_root` (default:
    $TMPDIR), xtb in a session (so a process group) of its own, OMP_NUM_THREADS =
    spec.threads. Never raises: what stops the run before xtb runs is the returned
    calculation's `error`. A GFN-FF pre-optimisation (`spec.preopt_gfnff`) runs to its
    end here, before xtb is started for the job."""
    config = config or RunConfig()
    log = config.log or logger
    job_dir = Path(job_dir)
    calc = Calculation(job_dir=job_dir, spec=spec, label=job_id or job_dir.name,
                       job_id=job_id, log=log, started=utcnow())
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / RESULT_FILE).unlink(missing_ok=True)  # an earlier attempt's, now stale
        xtb_path = find_program(config.xtb)
        if xtb_path is None:
            raise _Stop(JobError(
                type=ErrorType.infrastructure_error,
                message=f"the xtb program {config.xtb!r} was not found "
                        "(is xtb installed and on PATH?)",
            ))
        calc.scratch = _make_scratch(config.scratch_root, calc.label)
        calc.deadline = _deadline(config.timeout, config.xtb_timeout, spec.timeout)
        calc.child = _start(calc, config.cancel, xtb_path)
    except _Stop as stop:
        calc.error = stop.error
    except Exception as exc:  # the report must still be written; nothing escapes
        calc.error = _crashed(calc, exc)
    return calc


def _start(calc: Calculation, cancel: threading.Event | None, xtb_path: str) -> Child:
    spec, scratch, label, log = calc.spec, calc.scratch, calc.label, calc.log
    assert scratch is not None
    if cancel is not None and cancel.is_set():
        raise _Stop(JobError(type=ErrorType.cancelled, message="cancelled before xtb started"))
    start = spec.start
    if spec.preopt_gfnff:
        began = time.monotonic()
        start = preoptimise(spec, scratch, calc.deadline, cancel, xtb_path, log,
                            label) or start
        if calc.deadline is not None:  # one time limit for both runs
            calc.deadline = max(0.001, calc.deadline - (time.monotonic() - began))
    (scratch / INPUT_FILE).write_text(start.to_xyz(), encoding="utf-8")
    xcontrol = spec.xcontrol()
    if xcontrol is not None:
        (scratch / XCONTROL_FILE).write_text(xcontrol, encoding="utf-8")
    argv = [xtb_path, INPUT_FILE, *spec.xtb_args()]
    log.info("Starting xtb for job %s: xtb %s (%d thread%s)", label, " ".join(argv[1:]),
             spec.threads, "" if spec.threads == 1 else "s")
    try:
        return Child(argv, cwd=scratch, env=xtb_environment(spec, xtb_path),
                     stdout=scratch / OUTPUT_FILE)
    except OSError as exc:
        raise _Stop(JobError(
            type=ErrorType.infrastructure_error,
            message=f"cannot start xtb ({xtb_path}): {exc.strerror or exc}",
        )) from None


def _crashed(calc: Calculation, exc: Exception) -> JobError:
    calc.log.error("The runner failed for job %s: %s: %s", calc.label, type(exc).__name__, exc)
    calc.log.debug("Traceback of the runner failure", exc_info=True)
    return JobError(type=ErrorType.infrastructure_error,
                    message=f"the runner failed: {type(exc).__name__}: {exc}")


def _read_run(calc: Calculation, proc: ProcessOutcome
              ) -> tuple[JobResult | None, JobError | None]:
    """What xtb left in the scratch folder, once it has exited: a result, or the error."""
    spec, scratch, label, log = calc.spec, calc.scratch, calc.label, calc.log
    assert scratch is not None
    output = read_text(scratch / OUTPUT_FILE) or ""
    result: JobResult | None = None
    if proc.cancelled:
        error: JobError | None = JobError(
            type=ErrorType.cancelled,
            message=f"cancelled; xtb was stopped after {proc.elapsed:.1f} s",
            detail=tail(output, 10) or None,
        )
    elif proc.timed_out:
        error = JobError(
            type=ErrorType.timeout,
            message=f"xtb did not finish within the time limit of {calc.deadline:g} s and "
            "was stopped; give the job a longer timeout or choose a cheaper task",
            detail=tail(output, 10) or None,
        )
    else:
        files = {p.name for p in scratch.iterdir()}
        text = parse_text_output(output)
        error = classify_failure(proc.returncode, output, files, spec, parsed=text)
        if error is None:
            try:
                result = collect_result(scratch, output, spec, proc.elapsed, parsed=text)
            except OutputError as exc:
                error = JobError(type=ErrorType.xtb_error, message=str(exc),
                                 detail=tail(output) or None)
    if result is not None:
        log.info("xtb finished for job %s in %.2f s: E=%.7f Eh", label, proc.elapsed,
                 result.energy)
    elif error is not None:
        log.warning("xtb failed for job %s after %.2f s (%s): %s", label, proc.elapsed,
                    error.type.value, error.message)
    return result, error


def conclude(calc: Calculation, proc: ProcessOutcome | None) -> RunReport:
    """Read what xtb left (`proc`: how it ended, its process group gone; None when it
    never started), then write the report: xtb's files are moved into the job folder
    (copied when the scratch folder is on another file system) and ``result.json`` is
    written, all atomically and in one round of fsyncs, ``result.json`` renamed last:
    when it exists, everything else is in place. Then the scratch folder is removed.
    Never raises."""
    result: JobResult | None = None
    error = calc.error
    if error is None and proc is not None:
        try:
            result, error = _read_run(calc, proc)
        except Exception as exc:  # the report must still be written; nothing escapes
            error = _crashed(calc, exc)
    if result is None and error is None:
        error = JobError(type=ErrorType.infrastructure_error, message="xtb left no result")
    job_dir, job_id = calc.job_dir, calc.job_id
    report = RunReport(success=result is not None, result=result,
                       error=None if result is not None else error,
                       job_id=job_id, started_at=calc.started, finished_at=utcnow())
    try:
        files = artifacts(calc.scratch, job_dir) if calc.scratch is not None else []
        body = report.model_dump_json(indent=2) + "\n"
        write_files_atomic([*files, (job_dir / RESULT_FILE, body.encode())], move=True)
    except OSError as exc:
        calc.log.error("Cannot write %s for job %s: %s", RESULT_FILE, calc.label, exc)
        report = RunReport(
            success=False,
            error=JobError(type=ErrorType.infrastructure_error,
                           message=f"{RESULTS_UNWRITABLE} {job_dir}: "
                           f"{exc.strerror or exc}",
                           detail=report.error.message if report.error else None),
            job_id=job_id, started_at=calc.started, finished_at=utcnow(),
        )
    finally:
        if calc.scratch is not None:
            shutil.rmtree(calc.scratch, ignore_errors=True)
    return report


def run_job(job_dir: Path, spec: JobSpec, config: RunConfig | None = None, *,
            job_id: str | None = None) -> RunReport:
    """Run the calculation `spec` for the job folder `job_dir` to its end; write and
    return its report (`begin`, wait, `conclude`): the runner pod's way.

    The deadline is the smallest of `config.timeout`, `config.xtb_timeout` and
    ``spec.timeout`` (seconds; None: no limit); at the deadline, or when `config.cancel`
    is set, xtb's whole process group is stopped (SIGTERM, then SIGKILL). Never raises
    for anything a calculation can do: every outcome, including our own crashes, becomes
    a `RunReport`, also written to ``job_dir/result.json``.
    """
    config = config or RunConfig()
    calc = begin(job_dir, spec, config, job_id=job_id)
    proc = None
    if calc.child is not None:
        try:
            proc = watch(calc.child, timeout=calc.deadline, cancel=config.cancel)
        except Exception as exc:  # the report must still be written; nothing escapes
            calc.error = _crashed(calc, exc)
    return conclude(calc, proc)
