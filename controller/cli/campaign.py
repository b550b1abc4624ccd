"""The commands for many jobs at once: list, status, wait, cancel, delete, export.

Each reads only the records it returns (through the store's indexes); a group or a job
that does not exist exits 3.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from qforge.cli import export, render
from qforge.ids import validate_job_id
from qforge.record import Status
from qforge.settings import Settings
from qforge.store.jobstore import CorruptRecord, JobNotFound, JobStore
from qforge.store.layout import DONE_STATUSES

EXIT_OK, EXIT_FAILED, EXIT_NO_JOB = 0, 1, 3
RATE_WINDOW_MINUTES = 10.0


class NoSuchGroup(JobNotFound):
    def __init__(self, group: str) -> None:
        super().__init__(f"no such group: {group}")


def _store(settings: Settings) -> JobStore:
    return JobStore(settings.jobs_dir)


def _need_group(store: JobStore, group: str) -> None:
    if not store.group_exists(group):
        raise NoSuchGroup(group)


def _status(args: argparse.Namespace) -> Status | None:
    value = getattr(args, "status", None)
    return Status(value) if value else None


# ------------------------------------------------------------------ list
def selected_data(store: JobStore, status: Status | None,
                  group: str | None) -> list[dict[str, Any]]:
    """The records a command returns as metadata.json holds them, in submission order;
    a corrupt one is reported on stderr and skipped."""
    if group is not None:
        _need_group(store, group)
    records: list[dict[str, Any]] = []
    for item in store.select_data(status=status, group=group):
        if isinstance(item, CorruptRecord):
            print(f"qforge: warning: skipping {item}", file=sys.stderr)
        else:
            records.append(item)
    records.sort(key=lambda r: (r.get("created_ns", 0), r["job_id"]))
    return records


def list_jobs(args: argparse.Namespace, settings: Settings) -> int:
    records = selected_data(_store(settings), _status(args), args.group)
    if args.json:
        render.print_json(records)
    else:
        render.print_table(records)
    return EXIT_OK


# ---------------------------------------------------------------- status
@dataclass(frozen=True)
class Overview:
    group: str | None
    counts: dict[Status, int]
    finished_recently: int  # within the window
    window_minutes: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s.terminal)

    @property
    def rate_per_minute(self) -> float:
        return self.finished_recently / self.window_minutes

    @property
    def eta_seconds(self) -> float | None:
        left = self.total - self.finished
        if left == 0:
            return 0.0
        rate = self.rate_per_minute
        return None if rate <= 0 else 60.0 * left / rate

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "total": self.total,
            "counts": {s.value: n for s, n in self.counts.items()},
            "finished": self.finished,
            "window_minutes": self.window_minutes,
            "finished_in_window": self.finished_recently,
            "rate_per_minute": round(self.rate_per_minute, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
        }


def _iso_ns(stamp: str | None) -> int:
    if not stamp:
        return 0
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp() * 1e9)


def overview(store: JobStore, group: str | None,
             window_minutes: float = RATE_WINDOW_MINUTES) -> Overview:
    """Counts per status and the jobs finished within the window: for the whole store
    from the index alone (done markers are named by when the job ended), for a group
    from its members' records."""
    since = time.time_ns() - int(window_minutes * 60e9)
    if group is None:
        counts = store.counts()
        threshold = f"{since:020d}"
        recent = sum(1 for s in DONE_STATUSES for n in store.done_names(Status(s))
                     if n[:20] >= threshold)
        return Overview(None, counts, recent, window_minutes)
    _need_group(store, group)
    states = store.group_states(group)
    counts = dict.fromkeys(Status, 0)
    recent = 0
    for status, finished_at in states.values():
        counts[status] += 1
        if status.terminal and _iso_ns(finished_at) >= since:
            recent += 1
    return Overview(group, counts, recent, window_minutes)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (nothing finished recently)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status(args: argparse.Namespace, settings: Settings) -> int:
    view = overview(_store(settings), args.group)
    if args.json:
        render.print_json(view.as_json())
        return EXIT_OK
    title = f"Group {view.group}" if view.group else "All jobs"
    lines = [f"{title}: {view.total} job(s)"]
    lines += [f"  {s.value:<10} {n:>8}" for s, n in view.counts.items()]
    pct = 100.0 * view.finished / view.total if view.total else 100.0
    lines.append(f"Finished {view.finished} of {view.total} ({pct:.0f}%); "
                 f"{view.rate_per_minute:.1f} jobs/min over the last "
                 f"{view.window_minutes:g} min; time left: {_duration(view.eta_seconds)}")
    print("\n".join(lines))
    return EXIT_OK


# ------------------------------------------------------------------ wait
class Watch:
    """The jobs a wait follows: a terminal status is final, so each poll reads only
    the members not finished yet (and, for a group, lists its index for newcomers)."""

    def __init__(self, store: JobStore, job_ids: list[str], group: str | None) -> None:
        self.store = store
        self.group = group
        self.final: dict[str, Status] = {}
        self.open: dict[str, Status] = {}
        if group is None:
            for job_id in job_ids:
                self.open[job_id] = store.read(job_id).status  # JobNotFound: exit 3
        self.poll()

    def poll(self) -> None:
        store = self.store
        if self.group is not None:
            ids = [i for i in store.group_ids(self.group) if i not in self.final]
            states = store.group_states(self.group, ids)
            current = {jid: st for jid, (st, _) in states.items()}
        else:
            current = {}
            for job_id in self.open:
                data = store.peek(job_id)
                try:
                    current[job_id] = Status(data["status"]) if data else self.open[job_id]
                except (KeyError, ValueError):
                    current[job_id] = self.open[job_id]
        for job_id, st in current.items():
            if st.terminal:
                self.final[job_id] = st
                self.open.pop(job_id, None)
            else:
                self.open[job_id] = st

    @property
    def total(self) -> int:
        return len(self.final) + len(self.open)

    def counts(self) -> dict[Status, int]:
        out = dict.fromkeys(Status, 0)
        for st in (*self.final.values(), *self.open.values()):
            out[st] += 1
        return out

    def summary(self) -> str:
        return ", ".join(f"{n} {s.value}" for s, n in self.counts().items() if n)

    @property
    def done(self) -> bool:
        return not self.open

    @property
    def failed(self) -> int:
        return sum(1 for st in self.final.values() if st is not Status.COMPLETED)


class _Plain:
    """A line whenever the counts change (not a terminal, or --json)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last = ""

    def update(self, watch: Watch, elapsed: float) -> None:
        line = f"{len(watch.final)}/{watch.total} finished: {watch.summary()}"
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

    def update(self, watch: Watch, elapsed: float) -> None:
        self.progress.update(self.task, total=watch.total, completed=len(watch.final),
                             summary=watch.summary())

    def close(self) -> None:
        self.progress.stop()


def _display(label: str, quiet: bool) -> _Plain | _Bar:
    if sys.stderr.isatty() and not quiet:
        try:
            return _Bar(sys.stderr, label)
        except ImportError:
            pass
    return _Plain(sys.stderr)


def wait(args: argparse.Namespace, settings: Settings,
         sleep: Callable[[float], None] = time.sleep) -> int:
    store = _store(settings)
    if args.group is not None:
        _need_group(store, args.group)
        label = f"group {args.group}"
    else:
        label = f"{len(args.job_ids)} job(s)"
    watch = Watch(store, args.job_ids, args.group)
    shown = _display(label, quiet=False)
    start = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - start
            shown.update(watch, elapsed)
            if watch.done:
                break
            if args.timeout is not None and elapsed >= args.timeout:
                shown.close()
                print(f"qforge: gave up waiting after {args.timeout:g}s: {watch.summary()}",
                      file=sys.stderr)
                return EXIT_FAILED
            sleep(min(args.interval, max(0.01, (args.timeout or 1e9) - elapsed)))
            watch.poll()
    finally:
        shown.close()
    failed = sorted(j for j, st in watch.final.items() if st is not Status.COMPLETED)
    if args.json:
        render.print_json({"total": watch.total,
                           "counts": {s.value: n for s, n in watch.counts().items()},
                           "failed": failed})
    else:
        print(f"All {watch.total} job(s) finished: {watch.summary()}")
        for job_id in failed[:20]:
            print(f"  {job_id} {watch.final[job_id].value} (see `qforge show {job_id}`)")
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (`qforge list --status FAILED`)")
    return EXIT_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------- cancel
def cancel(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    if args.group is not None:
        _need_group(store, args.group)
        requested = already = shared = 0
        for job_id, (st, _) in store.group_states(args.group).items():
            if st.terminal:
                already += 1
                continue
            try:
                record = store.read(job_id)
                if set(store.groups_of(record)) - {args.group}:
                    shared += 1  # another campaign counts on it: cancel it by its id
                    continue
                store.request_cancel(job_id)
                requested += 1
            except (JobNotFound, CorruptRecord) as exc:
                print(f"qforge: warning: {exc}", file=sys.stderr)
        kept = (f"; {shared} kept because another group counts on them too (cancel those "
                "by job id)") if shared else ""
        print(f"Cancel requested for {requested} job(s) of group {args.group} "
              f"({already} already finished{kept}); the worker or controller will stop them")
        return EXIT_OK
    code = EXIT_OK
    for job_id in args.job_ids:
        try:
            record = store.request_cancel(job_id)
        except JobNotFound as exc:
            print(f"qforge: error: {exc}", file=sys.stderr)
            code = EXIT_NO_JOB
            continue
        if record.status.terminal:
            print(f"Job {record.job_id} is already {record.status.value}; nothing to cancel")
        else:
            print(f"Cancel requested for job {record.job_id} ({record.status.value}); "
                  "the worker or controller will stop it")
    return code


# ---------------------------------------------------------------- delete
def delete(args: argparse.Namespace, settings: Settings) -> int:
    """All or nothing: every id is checked (a bad one ends the command with its one
    line, nothing deleted), then each job is removed."""
    store = _store(settings)
    ids = list(dict.fromkeys(args.job_ids))
    for job_id in ids:
        validate_job_id(job_id)  # a malformed id is bad input (exit 2), not a lookup
        store.deletable(job_id)
    for job_id in ids:
        record = store.delete(job_id)
        print(f"Deleted job {record.job_id} ({record.status.value})")
    return EXIT_OK


# ---------------------------------------------------------------- export
def export_jobs(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    records = selected_data(store, _status(args), args.group)
    out: IO[str]
    if args.output and args.output != "-":
        out = open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    else:
        out = sys.stdout
    try:
        fmt = args.format
        if fmt == "csv":
            n = export.write_csv(records, out, args.group)
        elif fmt == "jsonl":
            n = export.write_jsonl(records, out, args.group)
        else:
            items = ((r, store.layout.job_dir(r["job_id"])) for r in records)
            writer = export.write_sdf if fmt == "sdf" else export.write_xyz
            n = writer(items, out, args.group)
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        print(f"Exported {n} job(s) to {args.output}", file=sys.stderr)
    return EXIT_OK
