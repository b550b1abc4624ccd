"""Text and JSON output of the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from qforge.record import JobRecord, Status
from qforge.service.models import JobView
from qforge_runner.quality import NOT_A_MINIMUM, NOT_CONVERGED
from qforge_runner.summary import QualitySummary, ResultSummary


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(records: list[dict[str, Any]]) -> None:
    """The job table from records as metadata.json holds them (no re-validation)."""
    from qforge.service.export import formula

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


def _number(value: Any, fmt: str, unit: str) -> str:
    """A number with its unit; anything else (a hand-edited record) as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:{fmt}} {unit}"
    return str(value)


def quality_text(quality: QualitySummary | Mapping[str, Any]) -> str:
    """A quality assessment in words: the verdict, then the notes behind it.

    "ok", or e.g. "not a minimum — 1 imaginary frequency (lowest -68.7 cm⁻¹)".
    """
    if isinstance(quality, QualitySummary):
        quality = quality.model_dump(mode="json")
    verdicts = []
    if quality.get("converged") is False:
        verdicts.append("not converged")
    if quality.get("imaginary_frequencies"):
        verdicts.append("not a minimum")
    if quality.get("gap_ok") is False:
        verdicts.append("doubtful electronic state")
    if quality.get("topology_changed"):
        verdicts.append("structure changed")
    if quality.get("ok"):
        verdicts = ["ok"]
    elif not verdicts:
        verdicts = ["not ok"]
    notes = []
    for note in map(str, quality.get("warnings") or ()):
        note = note.removesuffix(f": {NOT_A_MINIMUM}")
        if note != NOT_CONVERGED:
            notes.append(note)
    return ", ".join(verdicts) + (" — " + "; ".join(notes) if notes else "")


def result_lines(result: ResultSummary | Mapping[str, Any]) -> list[str]:
    """The result summary metadata.json keeps, in words and units: a record's, or one
    as JSON (a hand-edited one is shown as it is)."""
    if isinstance(result, ResultSummary):
        result = result.model_dump(mode="json")
    out = [_row("Energy", _number(result.get("energy"), ".8f", "Eh"))]
    if result.get("gap") is not None:
        out.append(_row("Gap", _number(result["gap"], ".3f", "eV")))
    if result.get("dipole_debye") is not None:
        out.append(_row("Dipole", _number(result["dipole_debye"], ".2f", "D")))
    if isinstance(result.get("converged"), bool):
        out.append(_row("Converged", "yes" if result["converged"] else "no"))
    if isinstance(result.get("topology_changed"), bool):
        out.append(_row("Bonds", "CHANGED in the optimisation (see Quality)"
                        if result["topology_changed"] else "as in the input"))
    out += thermo_lines(result.get("thermochemistry"))
    if result.get("wall_time") is not None:
        out.append(_row("Wall time", _number(result["wall_time"], ".1f", "s")))
    quality = result.get("quality")
    if isinstance(quality, Mapping):
        out.append(_row("Quality", quality_text(quality)))
    return out


def thermo_lines(thermo: Any) -> list[str]:
    """The thermochemistry of a hess/ohess result (xtb's RRHO), one value a line."""
    if not isinstance(thermo, Mapping):
        return []
    return [
        _row("Thermo", f"RRHO at {_number(thermo.get('temperature'), '.2f', 'K')}"),
        _row("ZPE", _number(thermo.get("zpe"), ".8f", "Eh")),
        _row("H", _number(thermo.get("enthalpy"), ".8f", "Eh") + "  (E + ZPE + H(0→T))"),
        _row("T·S", _number(thermo.get("ts"), ".7f", "Eh")),
        _row("G(RRHO)", _number(thermo.get("g_rrho"), ".8f", "Eh") + "  (ZPE included)"),
        _row("G", _number(thermo.get("free_energy"), ".8f", "Eh") + "  (E + G(RRHO))"),
    ]


def _row(label: str, text: str) -> str:
    return f"{label + ':':<10} {text}"


def print_show(view: JobView) -> None:
    record = JobRecord.model_validate(view.record)
    spec = record.spec
    method = f"{spec.method.value} {spec.task.value}"
    if spec.task.value in ("opt", "ohess"):
        method += f" ({spec.opt_level.value})"
    if spec.solvent:
        method += f", ALPB {spec.solvent}"
    out = [
        _row("Job", record.job_id),
        _row("Status", record.status.value),
        _row("Molecule", f"{spec.molecule.formula} ({spec.molecule.natoms} atoms), charge "
                         f"{spec.charge}, uhf {spec.uhf}"),
        _row("Method", method),
        _row("Owner", record.owner),
        _row("Created", record.created_at),
    ]
    if view.groups:
        out.append(_row("Groups", ", ".join(view.groups)))
    if record.started_at:
        out.append(_row("Started", f"{record.started_at} (attempt {record.attempts})"))
    if record.finished_at:
        out.append(_row("Finished", record.finished_at))
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
        out.append(_row("Runs on" if record.status is Status.RUNNING else "Ran on", where))
    out.extend(_row("Waiting", line) for line in view.waiting)
    if record.result is not None:
        out.extend(result_lines(record.result))
    if record.error:
        out.append(_row("Error", f"{record.error.type}: {record.error.message}"))
    for a in record.history:  # earlier attempts (docs/retry.md)
        how = f"{a.status.value}" + (f" ({a.error.type})" if a.error else "")
        out.append(_row(f"Attempt {a.number}", f"{how}; then {a.change} ({a.by})"))
    out.append(_row("Folder", view.folder))
    print("\n".join(out))


def print_outcome(record: JobRecord) -> None:
    if record.status is Status.COMPLETED and record.result is not None:
        res = record.result
        print(f"Job {record.job_id} COMPLETED: energy {_number(res.energy, '.8f', 'Eh')}"
              + (f", gap {_number(res.gap, '.3f', 'eV')}" if res.gap else ""))
    elif record.error is not None:
        print(f"Job {record.job_id} {record.status.value}: {record.error.type}: "
              f"{record.error.message}")
    else:
        print(f"Job {record.job_id} {record.status.value}")
