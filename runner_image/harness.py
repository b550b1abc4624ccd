"""The xtb harness: build the input, run xtb, parse, assess, write result.json.

`run_job` is the one entry point, used by ``qforge-runner`` in a runner pod and by the
local worker's threads. It never raises for anything a calculation can do: every
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from qforge_runner.atomic import write_files_atomic
from qforge_runner.connectivity import MAX_ATOMS as MAX_CONNECTIVITY_ATOMS
from qforge_runner.connectivity import connectivity, describe_changes
from qforge_runner.environment import xtb_environment
from qforge_runner.errors import InputError
from qforge_runner.failures import classify_failure
from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.preopt import preoptimise
from qforge_runner.process import find_program, run_process
from qforge_runner.quality import assess
from qforge_runner.result import ErrorType, JobError, JobResult, RunReport
from qforge_runner.spec import XCONTROL_FILE, JobSpec, Method, Task
from qforge_runner.thermo import Thermochemistry, ThermoMissing, parse_thermo
from qforge_runner.timestamps import utcnow
from qforge_runner.xtb_output import (
    TextOutput,
    parse_charges,
    parse_json_output,
    parse_text_output,
    parse_vibspectrum,
    tail,
    vibrational_frequencies,
)

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


class OutputError(Exception):
    """xtb finished cleanly but left no usable result."""


def _deadline(*limits: float | None) -> float | None:
    given = [t for t in limits if t is not None]
    return min(given) if given else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _dipole(json_dipole: tuple[float, float, float] | None,
            text: TextOutput) -> tuple[float, float, float] | None:
    """The final dipole. xtb 6.5's xtbout.json keeps the dipole of the *first* single
    point of an optimisation, so the text output's final one (3 decimals) decides; the
    JSON's more precise numbers are used when they agree with it."""
    if text.dipole is None:
        return json_dipole
    if json_dipole is not None and all(
        abs(j - t) <= 6e-4 for j, t in zip(json_dipole, text.dipole, strict=True)
    ):
        return json_dipole
    return text.dipole


def _charges_from_files(scratch: Path) -> tuple[float, ...] | None:
    for name in ("charges", "gfnff_charges"):  # xTB methods / GFN-FF
        raw = _read(scratch / name)
        if raw is not None:
            try:
                return parse_charges(raw)
            except (ValueError, IndexError):
                return None
    return None


def collect_result(scratch: Path, stdout: str, spec: JobSpec, wall_time: float, *,
                   parsed: TextOutput | None = None) -> JobResult:
    """Build the result from what a successful xtb run left in `scratch` (`parsed`: the
    output, already parsed)."""
    text = parsed or parse_text_output(stdout)
    warnings = list(text.warnings)
    raw_json = _read(scratch / "xtbout.json")
    js = parse_json_output(raw_json) if raw_json is not None else None
    usable = js if js is not None and js.energy is not None else None
    from_text = usable is None
    if js is not None and usable is None:
        warnings.append(f"xtbout.json unusable ({js.problem}): values from xtb's text output")
    elif js is None and spec.method is not Method.gfnff:  # GFN-FF never writes one
        warnings.append("xtbout.json missing: values from xtb's text output")
    energy = usable.energy if usable is not None else text.energy
    if energy is None:
        raise OutputError("xtb finished but its output holds no total energy")

    gap = usable.gap if usable and usable.gap is not None else text.gap
    if spec.method is Method.gfnff:
        gap = None  # a force field has no orbitals

    geometry = None
    if spec.task in (Task.opt, Task.ohess):
        opt_text = _read(scratch / "xtbopt.xyz")
        if opt_text is None:
            raise OutputError("the optimisation finished but xtb wrote no xtbopt.xyz")
        try:
            geometry = parse_xyz(opt_text)
        except InputError as exc:
            raise OutputError(f"xtbopt.xyz is unreadable: {exc}") from None

    charges = usable.partial_charges if usable else None
    if charges is None:
        charges = _charges_from_files(scratch)
    if charges is not None and len(charges) != spec.molecule.natoms:
        charges = None

    frequencies = None
    if spec.task in (Task.hess, Task.ohess):
        modes = usable.frequencies if usable else None
        if modes is None:
            vib = _read(scratch / "vibspectrum")
            modes = parse_vibspectrum(vib) if vib is not None else None
        if modes is None:
            raise OutputError("the Hessian finished but xtb reported no frequencies")
        final = geometry or spec.start
        frequencies = vibrational_frequencies(modes, final.geometry)

    converged = text.opt_converged is not False
    version = usable.xtb_version if usable and usable.xtb_version else text.xtb_version
    thermo, thermo_problem = _thermochemistry(stdout, spec)
    topology_change = _topology_change(spec, geometry)
    return JobResult(
        energy=energy,
        gap=gap,
        dipole=None if spec.method is Method.gfnff else _dipole(
            usable.dipole if usable else None, text),
        partial_charges=charges,
        geometry=geometry,
        frequencies=frequencies,
        converged=converged,
        xtb_version=version,
        method=spec.method,
        task=spec.task,
        wall_time=wall_time,
        quality=assess(method=spec.method, converged=converged, gap=gap,
                       frequencies=frequencies, from_text_output=from_text, warnings=warnings,
                       topology_change=topology_change, thermo_problem=thermo_problem),
        formula=spec.molecule.formula,
        thermochemistry=thermo,
        topology_changed=None if geometry is None else topology_change is not None,
    )


def _thermochemistry(stdout: str, spec: JobSpec) -> tuple[Thermochemistry | None, str | None]:
    """hess/ohess: xtb's thermochemistry, or why there is none (a quality note, the job
    still completes); other tasks: neither."""
    if spec.task not in (Task.hess, Task.ohess):
        return None, None
    try:
        thermo = parse_thermo(stdout)
    except (ThermoMissing, ValidationError) as exc:
        return None, str(exc).splitlines()[0]
    if abs(thermo.temperature - spec.temperature) > 0.01:
        return None, (f"xtb computed it at {thermo.temperature:g} K, not at the job's "
                      f"{spec.temperature:g} K")
    return thermo, None


def _topology_change(spec: JobSpec, final: Molecule | None) -> str | None:
    """How the optimisation changed the connectivity (None: unchanged, or no
    optimisation, or a molecule too big for the pure-Python comparison)."""
    if final is None or final.natoms > MAX_CONNECTIVITY_ATOMS \
            or final.symbols != spec.molecule.symbols:
        return None
    before = connectivity(spec.molecule.symbols, spec.molecule.geometry)
    after = connectivity(final.symbols, final.geometry)
    if before == after:
        return None
    return describe_changes(final.symbols, before, after)


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


def _execute(spec: JobSpec, scratch: Path, label: str, deadline: float | None,
             cancel: threading.Event | None, xtb_path: str,
             log: logging.Logger, xtb_exited: Callable[[], None],
             ) -> tuple[JobResult | None, JobError | None]:
    """Run xtb in `scratch` and read what it left: a result, or the error.
    `xtb_exited` is called the moment xtb has exited (or failed to start), before its
    output is read."""
    if cancel is not None and cancel.is_set():
        raise _Stop(JobError(type=ErrorType.cancelled, message="cancelled before xtb started"))
    start = spec.start
    if spec.preopt_gfnff:
        began = time.monotonic()
        start = preoptimise(spec, scratch, deadline, cancel, xtb_path, log, label) or start
        if deadline is not None:  # one time limit for both runs
            deadline = max(0.001, deadline - (time.monotonic() - began))
    (scratch / INPUT_FILE).write_text(start.to_xyz(), encoding="utf-8")
    xcontrol = spec.xcontrol()
    if xcontrol is not None:
        (scratch / XCONTROL_FILE).write_text(xcontrol, encoding="utf-8")
    argv = [xtb_path, INPUT_FILE, *spec.xtb_args()]
    log.info("Starting xtb for job %s: xtb %s (%d thread%s)", label, " ".join(argv[1:]),
             spec.threads, "" if spec.threads == 1 else "s")
    try:
        proc = run_process(argv, cwd=scratch, env=xtb_environment(spec, xtb_path),
                           stdout=scratch / OUTPUT_FILE, timeout=deadline, cancel=cancel)
    except OSError as exc:
        xtb_exited()
        raise _Stop(JobError(
            type=ErrorType.infrastructure_error,
            message=f"cannot start xtb ({xtb_path}): {exc.strerror or exc}",
        )) from None
    xtb_exited()
    output = _read(scratch / OUTPUT_FILE) or ""
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
            message=f"xtb did not finish within the time limit of {deadline:g} s and was "
            "stopped; give the job a longer timeout or choose a cheaper task",
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
    # called once, the moment xtb has exited (or could not start)
    on_calculation_end: Callable[[], None] | None = None
    # where it runs, said in the report (a runner pod's node and name; None elsewhere)
    node: str | None = None
    pod: str | None = None


def run_job(job_dir: Path, spec: JobSpec, config: RunConfig | None = None, *,
            job_id: str | None = None) -> RunReport:
    """Run the calculation `spec` for the job folder `job_dir`; write and return its report.

    `config.on_calculation_end` is called once, the moment xtb has exited (or could not start),
    before its output is read and the results are saved: a worker frees the
    calculation's slot there, so the next calculation runs while this one's output is
    parsed and its files are written and synced.

    xtb runs in a fresh scratch folder under `config.scratch_root` (default: $TMPDIR), in
    its own process group, with OMP_NUM_THREADS = spec.threads. The deadline is the
    smallest of `config.timeout`, `config.xtb_timeout` and ``spec.timeout`` (seconds;
    None: no limit); at the deadline, or when `config.cancel` is set, the whole group is
    stopped (SIGTERM, then SIGKILL). xtb's files are moved into `job_dir` (copied when
    the scratch folder is on another file system) and ``result.json`` is written, all
    atomically and in one round of fsyncs, ``result.json`` renamed last: when it exists,
    everything else is in place. Then the scratch folder is removed.
    """
    config = config or RunConfig()
    log = config.log or logger
    on_calculation_end = config.on_calculation_end
    job_dir = Path(job_dir)
    label = job_id or job_dir.name
    started = utcnow()
    result: JobResult | None = None
    error: JobError | None = None
    scratch: Path | None = None
    ended = False

    def calculation_ended() -> None:
        nonlocal ended
        if ended or on_calculation_end is None:
            return
        ended = True
        try:
            on_calculation_end()
        except Exception as exc:  # a caller's hook must not lose the report
            log.error("on_calculation_end failed for job %s: %s", label, exc)

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
        scratch = _make_scratch(config.scratch_root, label)
        deadline = _deadline(config.timeout, config.xtb_timeout, spec.timeout)
        result, error = _execute(spec, scratch, label, deadline, config.cancel, xtb_path, log,
                                 calculation_ended)
    except _Stop as stop:
        error = stop.error
    except Exception as exc:  # the report must still be written; nothing escapes
        log.error("The runner failed for job %s: %s: %s", label, type(exc).__name__, exc)
        log.debug("Traceback of the runner failure", exc_info=True)
        error = JobError(type=ErrorType.infrastructure_error,
                         message=f"the runner failed: {type(exc).__name__}: {exc}")
    calculation_ended()  # xtb never started, or the runner failed
    if result is None and error is None:
        error = JobError(type=ErrorType.infrastructure_error, message="xtb left no result")
    report = RunReport(success=result is not None, result=result,
                       error=None if result is not None else error,
                       job_id=job_id, started_at=started, finished_at=utcnow(),
                       node=config.node, pod=config.pod)
    try:
        files = artifacts(scratch, job_dir) if scratch is not None else []
        body = report.model_dump_json(indent=2) + "\n"
        write_files_atomic([*files, (job_dir / RESULT_FILE, body.encode())], move=True)
    except OSError as exc:
        log.error("Cannot write %s for job %s: %s", RESULT_FILE, label, exc)
        report = RunReport(
            success=False,
            error=JobError(type=ErrorType.infrastructure_error,
                           message=f"{RESULTS_UNWRITABLE} {job_dir}: "
                           f"{exc.strerror or exc}",
                           detail=report.error.message if report.error else None),
            job_id=job_id, started_at=started, finished_at=utcnow(),
            node=config.node, pod=config.pod,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report
