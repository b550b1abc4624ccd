"""What each `qforge` subcommand does. Parsing lives in main.py, rendering in render.py."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import NoReturn

from qforge.cli import render
from qforge.record import JobRecord, Status
from qforge.service.door import Manager
from qforge.settings import Settings
from qforge_runner.errors import InputError


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def wait_for(manager: Manager, job_id: str, *, timeout: float | None,
             quiet: bool = False, interval: float = 0.5) -> JobRecord:
    """Follows a job until it is terminal, printing each status change with the elapsed
    time; returns its record then (or as it stands when `timeout` ran out)."""
    start = time.monotonic()
    last: Status | None = None
    for snap in manager.follow([job_id], None, interval):
        elapsed = time.monotonic() - start
        status = next((s for s, n in snap.counts.items() if n), None)
        if status is not None and status is not last:
            if not quiet:
                print(f"[{elapsed:.1f}s] Job {job_id} status: {status.value}",
                      file=sys.stderr, flush=True)
            last = status
        if snap.done:
            break
        if timeout is not None and elapsed > timeout:
            print(f"qforge: gave up waiting after {timeout:g}s; job {job_id} is "
                  f"{last.value if last else '?'} (see `qforge show {job_id}`)",
                  file=sys.stderr)
            break
    return JobRecord.model_validate(manager.show(job_id).record)


def show(args: argparse.Namespace, manager: Manager) -> int:
    view = manager.show(args.job_id)
    if args.json:
        render.print_json(view.record)
    else:
        render.print_show(view)
    return 0


def result(args: argparse.Namespace, manager: Manager) -> int:
    res = manager.result(args.job_id, args.format)
    if res.message:
        print(f"qforge: {res.message}", file=sys.stderr)
    if res.body is not None:
        sys.stdout.write(res.body if res.format == "xyz" else res.body + "\n")
    return res.exit_code


def worker(args: argparse.Namespace, settings: Settings) -> int:
    from qforge.logs import setup_logging
    from qforge.worker import run_worker

    setup_logging(settings.log_dir, component="worker", fmt=settings.log_format)
    code = run_worker(settings, until_idle=args.until_idle)
    if args.until_idle and getattr(args, "exit_when_done", False):
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End the process at once, skipping the interpreter's teardown (≈ 25 ms of module
    and object clean-up that nothing needs): for a `worker --until-idle` that returned,
    so every record is already durable (its writes were drained and each was fsynced),
    its threads are idle and no job is running. The logs and stdio are flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def controller(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from qforge.k8s.operator import run_operator
    except ImportError as exc:
        raise InputError(
            f"the Kubernetes controller is not available here ({exc}); "
            "install qforge[k8s]") from None
    return run_operator(settings, liveness=args.liveness)
