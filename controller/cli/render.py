"""Text and JSON output of the CLI."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from pydantic import ValidationError

from controller.record import JobRecord, Status
from controller.settings import Settings
from controller.store.jobstore import JobStore
from controller.store.layout import QueueKey


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def validation_message(exc: ValidationError) -> str:
    """One line from a pydantic error: `field: what is wrong`."""
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {msg}" if loc else msg


def print_table(records: list[dict[str, Any]]) -> None:
    """The job table from records as metadata.json holds them (no re-validation)."""
    from controller.cli.export import formula

    if not records:
        print("No jobs.")
        return
    rows = [("JOB_ID", "STATUS", "METHOD", "TASK", "FORMULA", "ENERGY/ERROR", "CREATED")]
    for r in records:
        spec = r["spec"]
        res, err = r.get("result") or {}, r.get("error") or {}
        energy = res.get("energy")
        shown = f"{energy:.8f}" if isinstance(energy, int | float) else str(
            err.get("type") or "")
        rows.append((r["job_id"], r["status"], str(spec.get("method", "gfn2")),
                     str(spec.get("task", "opt")), formula(spec["molecule"]["symbols"]),
                     shown, str(r.get("created_at", ""))[:19].replace("T", " ")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def queue_position(store: JobStore, record: JobRecord) -> tuple[int, int] | None:
    key = QueueKey.make(record.spec.priority, record.created_ns, record.job_id)
    keys = store.queued()
    try:
        return keys.index(key) + 1, len(keys)
    except ValueError:
        return None


def _workers_alive(store: JobStore, settings: Settings) -> tuple[int, float | None]:
    """Heartbeats fresh within 3 poll intervals (by wall clock: a hint, not a verdict)."""
    try:
        names = os.listdir(store.layout.workers)
    except FileNotFoundError:
        return 0, None
    now = time.time()
    alive, newest = 0, None
    for name in names:
        try:
            age = now - (store.layout.workers / name).stat().st_mtime
        except FileNotFoundError:
            continue
        newest = age if newest is None else min(newest, age)
        if age <= max(3 * settings.poll_interval, 15):
            alive += 1
    return alive, newest


def waiting_line(store: JobStore, record: JobRecord) -> str:
    if record.status is Status.QUEUED:
        pos = queue_position(store, record)
        return f"(position {pos[0]} of {pos[1]} in the queue)" if pos else ""
    if record.status is Status.RUNNING and record.placement:
        p = record.placement
        return f"(on {p.k8s_job or p.instance or p.worker_id})"
    return ""


def why_waiting(store: JobStore, record: JobRecord, settings: Settings) -> list[str]:
    lines: list[str] = []
    if store.cancel_requested(record.job_id):
        lines.append("cancel requested; the scheduler will act on it")
    pos = queue_position(store, record)
    if pos:
        running = len(store.running_markers())
        lines.append(f"queue position {pos[0]} of {pos[1]} (priority {record.spec.priority}; "
                     "higher priorities first, then first come first served)")
        lines.append(f"{running} job(s) running; the cap is {settings.max_concurrent_jobs} "
                     "per worker (MAX_CONCURRENT_JOBS)")
    if record.waiting_reason:
        lines.append(record.waiting_reason)
    alive, newest = _workers_alive(store, settings)
    if alive == 0:
        if newest is None:
            lines.append("no worker or controller has ever run on this store: "
                         "start one with `qforge worker`")
        else:
            lines.append(f"no worker seems to be running (last heartbeat {newest:.0f}s ago): "
                         "start one with `qforge worker`")
    return lines


def print_show(store: JobStore, record: JobRecord, settings: Settings) -> None:
    spec = record.spec
    out = [
        f"Job:      {record.job_id}",
        f"Status:   {record.status.value}",
        f"Molecule: {spec.molecule.formula} ({spec.molecule.natoms} atoms), charge "
        f"{spec.charge}, uhf {spec.uhf}",
        f"Method:   {spec.method.value} {spec.task.value}"
        + (f" ({spec.opt_level.value})" if spec.task.value in ("opt", "ohess") else "")
        + (f", ALPB {spec.solvent}" if spec.solvent else ""),
        f"Created:  {record.created_at}",
    ]
    groups = store.groups_of(record)
    if groups:
        out.append(f"Groups:   {', '.join(groups)}")
    if record.started_at:
        out.append(f"Started:  {record.started_at} (attempt {record.attempts})")
    if record.finished_at:
        out.append(f"Finished: {record.finished_at}")
    p = record.placement
    if p is not None and record.status is not Status.QUEUED:
        if p.executor == "kubernetes":
            where = f"Kubernetes Job {p.k8s_job or '?'}"
            if p.pod:
                where += f", pod {p.pod}"
            if p.node:
                where += f" on node {p.node}"
        else:
            where = f"worker {p.worker_id} ({p.instance}) on {p.host}"
        verb = "Runs on: " if record.status is Status.RUNNING else "Ran on:  "
        out.append(f"{verb} {where}")
    if record.status is Status.QUEUED:
        for line in why_waiting(store, record, settings):
            out.append(f"Waiting:  {line}")
    elif record.status is Status.RUNNING and record.waiting_reason:
        out.append(f"Waiting:  {record.waiting_reason}")
    if record.result:
        res = record.result
        out.append(f"Energy:   {res.get('energy')} Eh")
        if res.get("gap") is not None:
            out.append(f"Gap:      {res.get('gap')} eV")
        for key in ("converged", "wall_time"):
            if key in res:
                out.append(f"{key.replace('_', ' ').capitalize() + ':':<9} {res[key]}")
        quality = res.get("quality")
        if isinstance(quality, dict):
            flags = ", ".join(f"{k}={v}" for k, v in quality.items() if v not in ((), [], None))
            out.append(f"Quality:  {flags}")
    if record.error:
        out.append(f"Error:    {record.error.type}: {record.error.message}")
    out.append(f"Folder:   {store.layout.job_dir(record.job_id)}")
    print("\n".join(out))


def print_outcome(record: JobRecord) -> None:
    if record.status is Status.COMPLETED and record.result:
        print(f"Job {record.job_id} COMPLETED: energy {record.result.get('energy')} Eh"
              + (f", gap {record.result['gap']} eV" if record.result.get("gap") else ""))
    elif record.error is not None:
        print(f"Job {record.job_id} {record.status.value}: {record.error.type}: "
              f"{record.error.message}")
    else:
        print(f"Job {record.job_id} {record.status.value}")
