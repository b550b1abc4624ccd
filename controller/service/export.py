"""`qforge export`: one row per job (CSV, JSON lines) or one structure per job (SDF, XYZ).

Rows come from the records' summaries alone (metadata.json); structures also read each
job's result.json for its optimised geometry (the input geometry when there is none:
a single point, a Hessian, a job that failed).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from qforge.inputs.topology import TopologyError
from qforge.molfile import export_topology, sdf_record
from qforge.record import JobRecord
from qforge.store.jobstore import load_result_json
from qforge.store.layout import TOPOLOGY_FILE
from qforge_runner.molecule import Molecule

COLUMNS = ("job_id", "name", "group", "formula", "method", "task", "status", "energy_eh",
           "gap_ev", "dipole_debye", "converged", "topology_changed", "n_imaginary",
           "temperature_k", "zpe_eh", "h_eh", "ts_eh", "g_rrho_eh", "free_energy_eh",
           "wall_time_s", "error_type", "error_message", "attempt")
# The thermochemistry's columns and their keys in the result summary (hess, ohess).
THERMO_COLUMNS = {"temperature_k": "temperature", "zpe_eh": "zpe", "h_eh": "enthalpy",
                  "ts_eh": "ts", "g_rrho_eh": "g_rrho", "free_energy_eh": "free_energy"}
FORMATS = ("csv", "jsonl", "sdf", "xyz")
ExportFormat = Literal["csv", "jsonl", "sdf", "xyz"]


def export_row(record: JobRecord, group: str | None = None) -> dict[str, Any]:
    """The export columns of one record; `group` is the group being exported (a
    duplicate counts there too), else the record's own."""
    return export_row_data(record.model_dump(mode="json"), group)


def formula(symbols: list[str]) -> str:
    return Molecule.model_construct(symbols=tuple(symbols), geometry=()).formula


def export_row_data(data: dict[str, Any], group: str | None = None) -> dict[str, Any]:
    """The export columns from a record as metadata.json holds it."""
    spec = data["spec"]
    res = data.get("result") or {}
    err = data.get("error") or {}
    quality = res.get("quality")
    if not isinstance(quality, dict):
        quality = {}
    thermo = res.get("thermochemistry")
    if not isinstance(thermo, dict):
        thermo = {}
    return {
        "job_id": data["job_id"],
        "name": spec.get("name"),
        "group": group or data.get("group"),
        "formula": formula(spec["molecule"]["symbols"]),
        "method": spec.get("method", "gfn2"),
        "task": spec.get("task", "opt"),
        "status": data["status"],
        "energy_eh": res.get("energy"),
        "gap_ev": res.get("gap"),
        "dipole_debye": res.get("dipole_debye"),
        "converged": res.get("converged"),
        "topology_changed": res.get("topology_changed"),
        "n_imaginary": quality.get("imaginary_frequencies") if res else None,
        **{column: thermo.get(key) for column, key in THERMO_COLUMNS.items()},
        "wall_time_s": res.get("wall_time"),
        "error_type": err.get("type"),
        "error_message": err.get("message"),
        # which attempt of the job gave the row: 1, or more after retries (docs/retry.md)
        "attempt": len(data.get("history") or ()) + 1,
    }


def input_molecule(data: dict[str, Any]) -> Molecule:
    """The submitted molecule of a stored record (validated when it was submitted)."""
    mol = data["spec"]["molecule"]
    return Molecule.model_construct(
        symbols=tuple(mol["symbols"]), geometry=tuple(tuple(a) for a in mol["geometry"]),
        comment=mol.get("comment", ""))


def cell(value: Any) -> str:
    """A CSV cell (and an SDF data item): every digit of a float, '' for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # every digit: the energies round-trip
    return str(value)


def write_csv(records: Iterable[dict[str, Any]], out: IO[str],
              group: str | None = None) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for record in records:
        row = export_row_data(record, group)
        writer.writerow([cell(row[c]) for c in COLUMNS])
        n += 1
    return n


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str],
                group: str | None = None) -> int:
    n = 0
    for record in records:
        out.write(json.dumps(export_row_data(record, group)) + "\n")
        n += 1
    return n


def final_geometry(record: dict[str, Any], job_dir: Path) -> tuple[Molecule, bool]:
    """The optimised geometry from result.json and True, or the input and False."""
    data = load_result_json(job_dir) if record.get("result") else None
    result = data.get("result") if data else None
    geometry = result.get("geometry") if isinstance(result, dict) else None
    if isinstance(geometry, dict):
        try:
            return Molecule.model_validate(geometry), True
        except ValidationError:
            pass
    return input_molecule(record), False


def _title(row: dict[str, Any], optimised: bool) -> str:
    parts = [row["job_id"]]
    if row["name"]:
        parts.append(row["name"])
    if row["energy_eh"] is not None:
        parts.append(f"energy={row['energy_eh']!r} Eh")
    if row["gap_ev"] is not None:
        parts.append(f"gap={row['gap_ev']!r} eV")
    parts.append(f"status={row['status']}")
    parts.append("geometry=optimised" if optimised else "geometry=input")
    return " ".join(parts)


def write_xyz(items: Iterable[tuple[dict[str, Any], Path]], out: IO[str],
              group: str | None = None) -> int:
    """Concatenated XYZ frames; the comment line carries id, name, energy, status."""
    n = 0
    for record, job_dir in items:
        molecule, optimised = final_geometry(record, job_dir)
        row = export_row_data(record, group)
        out.write(molecule.model_copy(update={"comment": _title(row, optimised)}).to_xyz())
        n += 1
    return n


def write_sdf(items: Iterable[tuple[dict[str, Any], Path]], out: IO[str],
              group: str | None = None, extra: list[tuple[str, str]] | None = None) -> int:
    """One record per job: its final coordinates with its bond table (qforge.molfile),
    the export columns as data items, and how the bonds were obtained (``topology``);
    `extra` data items after those (the per-molecule columns, for the best conformer)."""
    n = 0
    for record, job_dir in items:
        molecule, optimised = final_geometry(record, job_dir)
        row = export_row_data(record, group)
        charge = int(record["spec"].get("charge", 0))
        uhf = int(record["spec"].get("uhf", 0))
        topology, how = export_topology(job_dir / TOPOLOGY_FILE, molecule, charge, uhf)
        props = {k: row[k] for k in COLUMNS if k != "name"}
        props.update(charge=charge, uhf=uhf, geometry="optimised" if optimised else "input",
                     topology=how)
        props.update({k: v for k, v in extra or () if k not in props})
        try:
            text = sdf_record(molecule, row["name"] or row["job_id"], topology,
                              [(k, cell(v)) for k, v in props.items() if v is not None])
        except TopologyError as exc:
            props["topology"] = f"none: {exc}"
            text = sdf_record(molecule, row["name"] or row["job_id"], None,
                              [(k, cell(v)) for k, v in props.items() if v is not None])
        out.write(text)
        n += 1
    return n


def export_pieces(fmt: ExportFormat, records: list[dict[str, Any]],
                  layout_dir: Callable[[str], Any], group: str | None,
                  chunk: int = 200) -> Iterator[str]:
    """An export's text in pieces of `chunk` jobs, as the writers of `qforge export`
    produce it (the server streams them: memory bounded by one piece, not the export)."""
    header = len(",".join(COLUMNS)) + 1
    for start in range(0, max(len(records), 1), chunk):
        part = records[start:start + chunk]
        buf = io.StringIO()
        if fmt == "csv":
            write_csv(part, buf, group)
            text = buf.getvalue()
            yield text if start == 0 else text[header:]
            continue
        if fmt == "jsonl":
            write_jsonl(part, buf, group)
        else:
            items = ((r, layout_dir(r["job_id"])) for r in part)
            (write_sdf if fmt == "sdf" else write_xyz)(items, buf, group)
        yield buf.getvalue()
