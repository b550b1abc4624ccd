"""A job's result in the formats `qforge result` offers, and what the job page shows of a
job beside its record: the tail of xtb's output, the input and optimised molecules."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from qforge.auth.roles import Identity, can_change
from qforge.record import JobRecord, Status
from qforge.service.models import JobPage, JobView, ResultView, Structure
from qforge.store.jobstore import load_report, load_result_json
from qforge_runner.result import to_qcschema

LOG_TAIL_BYTES = 16 * 1024  # the job page's tail of xtb's output
ResultFormat = Literal["json", "xyz", "qcschema"]


def result_view(record: JobRecord, job_dir: Path, fmt: ResultFormat) -> ResultView:
    if not record.status.terminal:
        return ResultView(exit_code=1, format=fmt, message=(
            f"job {record.job_id} is {record.status.value}: no result yet"))
    ok = 0 if record.status is Status.COMPLETED else 1
    if fmt == "json":
        data = load_result_json(job_dir)
        body = data if data is not None else record.model_dump(mode="json")
        return ResultView(exit_code=ok, format=fmt, body=json.dumps(body, indent=2))
    report = load_report(job_dir)
    if fmt == "qcschema":
        if report is None:
            return ResultView(exit_code=1, format=fmt, message=(
                f"job {record.job_id} has no readable result.json"))
        from qforge.molfile import qcschema_connectivity  # not for the worker's start-up

        schema = to_qcschema(record.spec, report,
                             qcschema_connectivity(job_dir, record.spec))
        return ResultView(exit_code=ok, format=fmt, body=json.dumps(schema, indent=2))
    geometry = report.result.geometry if report and report.result else None
    if geometry is None:
        return ResultView(exit_code=1 if ok else 2, format=fmt, message=(
            f"job {record.job_id} ({record.spec.task.value}) has no optimised geometry; "
            f"its input is {job_dir}/input.xyz"))
    return ResultView(exit_code=ok, format=fmt, body=geometry.to_xyz())


def job_page(view: JobView, job_dirs: Callable[[str], Path], identity: Identity) -> JobPage:
    """`show` and what the job page adds: may the caller cancel it, the tail of xtb's
    output, the input and optimised molecules."""
    record = JobRecord.model_validate(view.record)
    job_dir = job_dirs(record.job_id)
    log_name, tail = log_tail(job_dir)
    report = load_report(job_dir) if record.status.terminal else None
    out = report.result.geometry if report and report.result else None
    mol = record.spec.molecule
    return JobPage(
        view=view, log_name=log_name, log_tail=tail,
        can_cancel=(not record.status.terminal and can_change(identity, record.owner)),
        input=Structure(symbols=list(mol.symbols), geometry=list(mol.geometry)),
        optimised=(Structure(symbols=list(out.symbols), geometry=list(out.geometry))
                   if out is not None else None))


def log_tail(job_dir: Path) -> tuple[str | None, str]:
    """The last LOG_TAIL_BYTES of xtb's output in the job folder (whole lines)."""
    for name in ("xtb.log", "runner.log"):
        path = job_dir / name
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                data = fh.read()
        except OSError:
            continue
        text = data.decode("utf-8", "replace")
        if size > LOG_TAIL_BYTES:
            text = text.partition("\n")[2]
        return name, text
    return None, ""
