"""The commands for many jobs at once: list, status, wait, cancel, retry, delete, export.

Each asks the service layer (a `Manager`: the store here, or a server) and renders what it
answers; a group or a job that does not exist exits 3.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import IO

from qforge.cli import render
from qforge.record import Status
from qforge.scheduling.fairview import OwnerCount, owner_lines
from qforge.service.door import Manager
from qforge.service.models import Overview, Progress
from qforge.service.problems import UsageError

EXIT_OK, EXIT_FAILED, EXIT_NO_JOB = 0, 1, 3


def _status(args: argparse.Namespace) -> Status | None:
    value = getattr(args, "status", None)
    return Status(value) if value else None


def _warn(line: str) -> None:
    print(f"qforge: warning: {line}", file=sys.stderr)


# ------------------------------------------------------------------ list
def list_jobs(args: argparse.Namespace, manager: Manager) -> int:
    records = manager.records(_status(args), args.group, _warn)
    if args.json:
        render.print_json(records)
    else:
        render.print_table(records)
    return EXIT_OK


# ---------------------------------------------------------------- status
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (nothing finished recently)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _window(minutes: float) -> str:
    return f"{minutes:g} min" if minutes >= 1 else f"{minutes * 60:.0f} s"


def status_lines(view: Overview) -> list[str]:
    title = f"Group {view.group}" if view.group else "All jobs"
    lines = [f"{title}: {view.total} job(s)"]
    lines += [f"  {s.value:<10} {n:>8}" + (
        f"  ({view.waiting} waiting for other jobs)"
        if s is Status.QUEUED and view.waiting else "") for s, n in view.counts.items()]
    pct = 100.0 * view.finished / view.total if view.total else 100.0
    lines.append(f"Finished {view.finished} of {view.total} ({pct:.0f}%); "
                 f"{view.rate_per_minute:.1f} jobs/min over the last "
                 f"{_window(view.window_minutes)}; time left: {_duration(view.eta_seconds)}")
    if view.molecules is not None:
        lines.append(view.molecules.line())
    return lines


def status(args: argparse.Namespace, manager: Manager) -> int:
    if args.owners and args.group is not None:
        raise UsageError("status: --owners is for the whole store, not one --group")
    view = manager.overview(args.group, owners=args.owners)
    if args.json:
        render.print_json(view.as_json())
        return EXIT_OK
    lines = status_lines(view)
    if view.owners:
        lines += ["Per owner:", *owner_lines(
            {o: OwnerCount(r, q) for o, (r, q) in view.owners.items()})]
    print("\n".join(lines))
    return EXIT_OK


# ------------------------------------------------------------------ wait
class _Plain:
    """A line whenever the counts change (not a terminal, or --json)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last = ""

    def update(self, snap: Progress, elapsed: float) -> None:
        line = f"{snap.finished}/{snap.total} finished: {snap.summary()}"
        if line != self.last:
            print(f"[{elapsed:.1f}s] {line}", file=self.out, flush=True)
            self.last = line

    def close(self) -> None:
        pass


class _Bar:
    """One live progress bar (rich) on a terminal."""

    def __init__(self, out: IO[str], label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[summary]}"),
                                 console=Console(file=out), transient=False)
        self.task = self.progress.add_task(label, total=None, summary="")
        self.progress.start()

    def update(self, snap: Progress, elapsed: float) -> None:
        self.progress.update(self.task, total=snap.total, completed=snap.finished,
                             summary=snap.summary())

    def close(self) -> None:
        self.progress.stop()


def _display(label: str, quiet: bool) -> _Plain | _Bar:
    if sys.stderr.isatty() and not quiet:
        try:
            return _Bar(sys.stderr, label)
        except ImportError:
            pass
    return _Plain(sys.stderr)


def follow(manager: Manager, job_ids: list[str], group: str | None, *,
           timeout: float | None, interval: float, quiet: bool = False,
           ) -> tuple[Progress, bool]:
    """Follows jobs to their end, showing progress; the last snapshot and whether all
    ended (False: gave up after `timeout` seconds)."""
    label = f"group {group}" if group is not None else f"{len(job_ids)} job(s)"
    start = time.monotonic()
    shown = _display(label, quiet=quiet) if not quiet else None
    snap: Progress | None = None
    try:
        for snap in manager.follow(job_ids, group, interval):
            elapsed = time.monotonic() - start
            if shown is not None:
                shown.update(snap, elapsed)
            if snap.done:
                return snap, True
            if timeout is not None and elapsed >= timeout:
                break
    finally:
        if shown is not None:
            shown.close()
    if snap is None:  # pragma: no cover - follow yields at least once
        snap = manager.progress(job_ids, group)
    if timeout is not None and not quiet:
        print(f"qforge: gave up waiting after {timeout:g}s: {snap.summary()}",
              file=sys.stderr)
    return snap, False


def wait(args: argparse.Namespace, manager: Manager) -> int:
    snap, ended = follow(manager, args.job_ids, args.group, timeout=args.timeout,
                         interval=args.interval)
    if not ended:
        return EXIT_FAILED
    if args.json:
        render.print_json({"total": snap.total,
                           "counts": {s.value: n for s, n in snap.counts.items()},
                           "failed": snap.failed})
    else:
        print(f"All {snap.total} job(s) finished: {snap.summary()}")
        for job_id in snap.failed[:20]:
            print(f"  {job_id} {snap.failed_status[job_id].value} "
                  f"(see `qforge show {job_id}`)")
        if len(snap.failed) > 20:
            print(f"  ... and {len(snap.failed) - 20} more (`qforge list --status FAILED`)")
    return EXIT_FAILED if snap.failed else EXIT_OK


# ---------------------------------------------------------------- cancel
def cancel(args: argparse.Namespace, manager: Manager) -> int:
    res = manager.cancel(args.job_ids, args.group)
    for line in res.warnings:
        print(f"qforge: warning: {line}", file=sys.stderr)
    if res.group is not None:
        kept = (f"; {res.shared} kept because another group counts on them too (cancel "
                "those by job id)") if res.shared else ""
        print(f"Cancel requested for {len(res.requested)} job(s) of group {res.group} "
              f"({len(res.already)} already finished{kept}); the worker or controller "
              "will stop them")
        return EXIT_OK
    already, requested = dict(res.already), dict(res.requested)
    for job_id in dict.fromkeys(args.job_ids):
        if job_id in res.missing:
            print(f"qforge: error: no such job: {job_id}", file=sys.stderr)
        elif job_id in already:
            print(f"Job {job_id} is already {already[job_id].value}; nothing to cancel")
        elif job_id in requested:
            print(f"Cancel requested for job {job_id} ({requested[job_id].value}); "
                  "the worker or controller will stop it")
    return EXIT_NO_JOB if res.missing else EXIT_OK


# ---------------------------------------------------------------- retry
def retry(args: argparse.Namespace, manager: Manager) -> int:
    res = manager.retry(args.job_ids, args.group, error_type=args.error_type,
                        include_cancelled=args.include_cancelled)
    if res.group is not None:
        print(f"Retried {len(res.retried)} job(s) of group {res.group}"
              + (f" ({len(res.skipped)} skipped)" if res.skipped else ""))
    for job_id, attempt in res.retried if res.group is None else []:
        print(f"Retried job {job_id}: attempt {attempt} queued")
    for job_id, why in res.skipped:
        print(f"Skipped job {job_id}: {why}")
    return EXIT_OK


# ---------------------------------------------------------------- delete
def delete(args: argparse.Namespace, manager: Manager) -> int:
    for job_id, st in manager.delete(args.job_ids).jobs:
        print(f"Deleted job {job_id} ({st.value})")
    return EXIT_OK


# ---------------------------------------------------------------- export
def export_jobs(args: argparse.Namespace, manager: Manager) -> int:
    per_molecule = getattr(args, "per_molecule", False)
    n, pieces = manager.export(args.format, _status(args), args.group, _warn,
                               per_molecule=per_molecule)
    out: IO[str]
    if args.output and args.output != "-":
        out = open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    else:
        out = sys.stdout
    try:
        for piece in pieces:
            out.write(piece)
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        what = "molecule(s)" if per_molecule else "job(s)"
        print(f"Exported {n} {what} to {args.output}", file=sys.stderr)
    return EXIT_OK
