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
from qforge.settings import Settings
from qforge.store.jobstore import CorruptRecord, JobStore, load_report, load_result_json
from qforge_runner.errors import InputError
from qforge_runner.result import to_qcschema


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def wait_for(store: JobStore, job_id: str, *, timeout: float | None,
             quiet: bool = False, interval: float = 0.5) -> JobRecord:
    """Poll a job until it is terminal, printing each status change with the elapsed
    time (and a live line on a terminal)."""
    start = time.monotonic()
    last: Status | None = None
    tty = sys.stderr.isatty() and not quiet
    record = store.read(job_id)
    while True:
        # A reader never sees half a file, but a hand edit may be in progress.
        with contextlib.suppress(CorruptRecord):
            record = store.read(job_id)
        elapsed = time.monotonic() - start
        if record.status is not last:
            if tty:
                sys.stderr.write("\r\033[K")
            if not quiet:
                print(f"[{elapsed:.1f}s] Job {job_id} status: {record.status.value}",
                      file=sys.stderr, flush=True)
            last = record.status
        if record.status.terminal:
            if tty:
                sys.stderr.write("\r\033[K")
            return record
        if timeout is not None and elapsed > timeout:
            if tty:
                sys.stderr.write("\r\033[K")
            print(f"qforge: gave up waiting after {timeout:g}s; job {job_id} is "
                  f"{record.status.value} (see `qforge show {job_id}`)", file=sys.stderr)
            return record
        if tty:
            why = render.waiting_line(store, record)
            sys.stderr.write(f"\r\033[K  {record.status.value.lower()} {elapsed:5.0f}s {why}")
            sys.stderr.flush()
        time.sleep(interval)


def show(args: argparse.Namespace, settings: Settings) -> int:
    store = JobStore(settings.jobs_dir)
    record = store.read(args.job_id)
    if args.json:
        render.print_json(record.model_dump(mode="json"))
    else:
        render.print_show(store, record, settings)
    return 0


def result(args: argparse.Namespace, settings: Settings) -> int:
    store = JobStore(settings.jobs_dir)
    record = store.read(args.job_id)
    if not record.status.terminal:
        print(f"qforge: job {record.job_id} is {record.status.value}: no result yet",
              file=sys.stderr)
        return 1
    job_dir = store.layout.job_dir(record.job_id)
    if args.format == "json":
        data = load_result_json(job_dir)
        render.print_json(data if data is not None else record.model_dump(mode="json"))
        return 0 if record.status is Status.COMPLETED else 1
    report = load_report(job_dir)
    if args.format == "qcschema":
        if report is None:
            print(f"qforge: job {record.job_id} has no readable result.json", file=sys.stderr)
            return 1
        from qforge.molfile import qcschema_connectivity  # not for the worker's start-up

        render.print_json(to_qcschema(record.spec, report,
                                      qcschema_connectivity(job_dir, record.spec)))
    else:  # xyz
        geometry = report.result.geometry if report and report.result else None
        if geometry is None:
            print(f"qforge: job {record.job_id} ({record.spec.task.value}) has no optimised "
                  f"geometry; its input is {job_dir}/input.xyz",
                  file=sys.stderr)
            return 1 if record.status is not Status.COMPLETED else 2
        sys.stdout.write(geometry.to_xyz())
    return 0 if record.status is Status.COMPLETED else 1


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
