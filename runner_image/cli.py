"""``qforge-runner JOB_DIR``: run the job in JOB_DIR (inside a runner pod).

Reads ``JOB_DIR/metadata.json`` (its ``spec`` and ``job_id``), runs xtb through
`run_job`, and leaves ``JOB_DIR/result.json``. Writes nowhere else but the scratch
folder, so it runs on a read-only root file system.

Environment: XTB_TIMEOUT and JOB_TIMEOUT (seconds; the smaller, and the spec's own
timeout, applies), QFORGE_SCRATCH (scratch root, default $TMPDIR), QFORGE_XTB (the xtb
program, default ``xtb`` on PATH).

Exit status: 0 the calculation succeeded; 1 it failed (the typed error is in
result.json); 2 JOB_DIR or its metadata.json is missing or invalid (result.json records
an input_error when JOB_DIR is writable); 128+N when stopped by signal N (SIGTERM:
143), after xtb was stopped and result.json written with the error type cancelled.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from qforge_runner import __version__
from qforge_runner.atomic import write_json_atomic
from qforge_runner.errors import InputError
from qforge_runner.harness import RESULT_FILE, RunConfig, run_job
from qforge_runner.result import ErrorType, JobError, RunReport
from qforge_runner.spec import JobSpec
from qforge_runner.timestamps import utcnow

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
METADATA_FILE = "metadata.json"

log = logging.getLogger(__name__)


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def load_job(job_dir: Path) -> tuple[str, JobSpec]:
    """``(job_id, spec)`` from JOB_DIR/metadata.json; InputError says what is wrong."""
    if not job_dir.is_dir():
        raise InputError(f"{job_dir}: no such job folder")
    path = job_dir / METADATA_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise InputError(f"{path}: has no 'spec' object")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        job_id = job_dir.resolve().name
    try:
        spec = JobSpec.model_validate(data["spec"])
    except ValidationError as exc:
        raise InputError(
            f"{path}: {InputError.from_validation_error(exc, prefix='spec')}"
        ) from None
    except InputError as exc:
        raise InputError(f"{path}: spec: {exc}") from None
    return job_id, spec


def _record_input_error(job_dir: Path, job_id: str | None, message: str) -> None:
    """Leave result.json with the input error, when the folder exists and is writable."""
    if not job_dir.is_dir():
        return
    now = utcnow()
    report = RunReport(success=False, error=JobError(type=ErrorType.input_error, message=message),
                       job_id=job_id, started_at=now, finished_at=now)
    try:
        write_json_atomic(job_dir / RESULT_FILE, report.model_dump(mode="json"))
    except OSError as exc:
        log.warning("Cannot write %s: %s", job_dir / RESULT_FILE, exc.strerror or exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qforge-runner",
        description="Run the xtb calculation of one qforge job folder and write its "
        "result.json.",
    )
    parser.add_argument("job_dir", metavar="JOB_DIR", type=Path,
                        help="the job's folder, holding metadata.json")
    parser.add_argument("--version", action="version", version=f"qforge-runner {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    job_dir: Path = args.job_dir
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="[%(asctime)s] %(name)s - %(levelname)s - %(message)s",
    )
    env = os.environ
    job_id: str | None = None
    try:
        job_id, spec = load_job(job_dir)
        timeout = _seconds(env, "JOB_TIMEOUT")
        xtb_timeout = _seconds(env, "XTB_TIMEOUT")
    except InputError as exc:
        print(f"qforge-runner: {exc}", file=sys.stderr)
        _record_input_error(job_dir, job_id, str(exc))
        return EXIT_INPUT

    cancel = threading.Event()
    received: list[int] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        del frame
        received.append(signum)
        cancel.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:  # a pod is stopped with SIGTERM: stop xtb, still write result.json
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _stop)
    try:
        scratch = env.get("QFORGE_SCRATCH") or None
        config = RunConfig(scratch_root=Path(scratch) if scratch else None,
                           timeout=timeout, xtb_timeout=xtb_timeout, cancel=cancel,
                           xtb=env.get("QFORGE_XTB") or "xtb", log=log,
                           node=env.get("NODE_NAME") or None,
                           pod=env.get("POD_NAME") or None)
        report = run_job(job_dir, spec, config, job_id=job_id)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        name = signal.Signals(received[0]).name
        print(f"qforge-runner: stopped by {name}", file=sys.stderr)
        return 128 + received[0]
    if report.success:
        return EXIT_OK
    error = report.error or JobError(type=ErrorType.infrastructure_error, message="no error given")
    print(f"qforge-runner: job {job_id} failed ({error.type.value}): {error.message}",
          file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
