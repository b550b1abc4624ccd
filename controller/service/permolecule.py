"""`qforge export --per-molecule`: one row (CSV, JSON lines) or best structure (SDF, XYZ)
per molecule of a selection (docs/ensembles.md).

The jobs of one molecule share a molecule key (JobRecord.molecule; a record without one
is a molecule of its own). Its *conformers* are those of its jobs that wait on no other
job; a job that does (`depends_on`: a follow-up step such as `--then hess`) is not a
conformer, and a COMPLETED hess/ohess follow-up gives the row its free energy (the one
on the lowest conformer when there is one, else the lowest). A conformer counts as
converged when it COMPLETED with an energy and xtb did not say it failed to converge.
The arithmetic (duplicates, Boltzmann weights) is qforge.service.ensemble's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from qforge.service.ensemble import CONFORMER_SUFFIX, Conformer, Summary, summarize
from qforge.service.export import cell, final_geometry, formula
from qforge_runner.spec import DEFAULT_TEMPERATURE

COLUMNS: Final = ("molecule", "name", "group", "formula", "method", "task", "conformers",
                  "converged", "distinct", "best_job_id", "energy_eh", "gap_ev",
                  "dipole_debye", "free_energy_eh", "boltzmann_energy_eh", "boltzmann_gap_ev",
                  "boltzmann_dipole_debye", "best_weight", "temperature_k")
THERMO_TASKS: Final = frozenset({"hess", "ohess"})



@dataclass(frozen=True)
class Molecule:
    """The jobs of one molecule (records as metadata.json holds them)."""

    key: str
    conformers: list[dict[str, Any]]
    followups: list[dict[str, Any]]


def _calculation(rec: dict[str, Any]) -> tuple[str, str, str, str]:
    """What makes two conformers' energies comparable: the same molecule computed with
    the same method, task, optimisation level and solvent."""
    spec = rec["spec"]
    return (rec.get("molecule") or rec["job_id"], str(spec.get("method", "gfn2")),
            str(spec.get("task", "opt")), str(spec.get("solvent")))


def by_molecule(records: list[dict[str, Any]]) -> list[Molecule]:
    """The records grouped by molecule key, in the order each molecule first appears.
    Conformers computed differently (another method, task or solvent: energies that do
    not compare) make another row of the same molecule; follow-up steps go with every
    row of their molecule (a row of their own when it has none in the selection)."""
    rows: dict[tuple[str, str, str, str], Molecule] = {}
    followups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        key = rec.get("molecule") or rec["job_id"]
        if rec.get("depends_on"):
            followups.setdefault(key, []).append(rec)
        else:
            rows.setdefault(_calculation(rec), Molecule(key, [], [])).conformers.append(rec)
    out = list(rows.values())
    keys = {m.key for m in out}
    for mol in out:
        mol.followups.extend(followups.get(mol.key, ()))
    out += [Molecule(key, [], recs) for key, recs in followups.items() if key not in keys]
    return out


def _result(rec: dict[str, Any]) -> dict[str, Any]:
    res = rec.get("result")
    return res if isinstance(res, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        return None
    return float(value)


def converged(rec: dict[str, Any]) -> bool:
    res = _result(rec)
    return (rec.get("status") == "COMPLETED" and _number(res.get("energy")) is not None
            and res.get("converged") is not False)


def heavy_atoms(symbols: tuple[str, ...], geometry: Any) -> tuple[tuple[float, float, float], ...]:
    """The coordinates of the atoms other than hydrogen (all of them when there are none)."""
    heavy = tuple(tuple(xyz) for s, xyz in zip(symbols, geometry, strict=True) if s != "H")
    return heavy or tuple(tuple(xyz) for xyz in geometry)


def _conformer(rec: dict[str, Any], job_dir: Path) -> Conformer:
    res = _result(rec)
    molecule, _ = final_geometry(rec, job_dir)
    return Conformer(rec["job_id"], float(res["energy"]), _number(res.get("gap")),
                     _number(res.get("dipole_debye")),
                     heavy_atoms(molecule.symbols, molecule.geometry))


def _free_energy(mol: Molecule, best: dict[str, Any] | None) -> float | None:
    def free(rec: dict[str, Any]) -> float | None:
        thermo = _result(rec).get("thermochemistry")
        return _number(thermo.get("free_energy")) if isinstance(thermo, dict) else None

    done = [r for r in mol.followups if r.get("status") == "COMPLETED"
            and r["spec"].get("task") in THERMO_TASKS and free(r) is not None]
    if best is not None:
        on_best = [r for r in done if best["job_id"] in r.get("depends_on", ())]
        if on_best:
            return free(on_best[0])
    values = [v for v in map(free, done) if v is not None]
    if values:
        return min(values)
    if best is not None and best["spec"].get("task") in THERMO_TASKS:
        return free(best)
    return None


def row(mol: Molecule, job_dir: Callable[[str], Path], group: str | None
        ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The molecule's row, and the record of its lowest conformer (None when none
    converged)."""
    done = [r for r in mol.conformers if converged(r)]
    first = (mol.conformers or mol.followups)[0]
    by_id = {r["job_id"]: r for r in done}
    temperature = float(first["spec"].get("temperature", DEFAULT_TEMPERATURE))
    summary: Summary | None = None
    if done:
        lowest = min(done, key=lambda r: (_result(r)["energy"], r["job_id"]))
        temperature = float(lowest["spec"].get("temperature", DEFAULT_TEMPERATURE))
        summary = summarize([_conformer(r, job_dir(r["job_id"])) for r in done], temperature)
    best = by_id[summary.best.job_id] if summary else None
    shown = best or first
    spec = shown["spec"]
    return {
        "molecule": mol.key,
        "name": CONFORMER_SUFFIX.sub("", spec.get("name") or "") or None,
        "group": group or shown.get("group"),
        "formula": formula(spec["molecule"]["symbols"]),
        "method": spec.get("method", "gfn2"),
        "task": spec.get("task", "opt"),
        "conformers": len(mol.conformers),
        "converged": len(done),
        "distinct": len(summary.distinct) if summary else 0,
        "best_job_id": best["job_id"] if best else None,
        "energy_eh": summary.best.energy if summary else None,
        "gap_ev": summary.best.gap if summary else None,
        "dipole_debye": summary.best.dipole if summary else None,
        "free_energy_eh": _free_energy(mol, best),
        "boltzmann_energy_eh": summary.energy if summary else None,
        "boltzmann_gap_ev": summary.gap if summary else None,
        "boltzmann_dipole_debye": summary.dipole if summary else None,
        "best_weight": summary.weights[0] if summary else None,
        "temperature_k": temperature,
    }, best


def pieces(fmt: str, records: list[dict[str, Any]], job_dir: Callable[[str], Path],
           group: str | None) -> tuple[int, Iterator[str]]:
    """How many molecules, and the export's text a molecule at a time."""
    molecules = by_molecule(records)

    def text() -> Iterator[str]:
        if fmt == "csv":
            yield ",".join(COLUMNS) + "\n"
        for mol in molecules:
            data, best = row(mol, job_dir, group)
            if fmt == "csv":
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerow([cell(data[c]) for c in COLUMNS])
                yield buf.getvalue()
            elif fmt == "jsonl":
                yield json.dumps(data) + "\n"
            elif best is not None:  # sdf, xyz: the best geometry, when there is one
                yield _structure(fmt, data, best, job_dir(best["job_id"]))

    return len(molecules), text()


def _structure(fmt: str, data: dict[str, Any], best: dict[str, Any], job_dir: Path) -> str:
    from qforge.service.export import write_sdf, write_xyz

    buf = io.StringIO()
    if fmt == "xyz":
        write_xyz([(best, job_dir)], buf)
        return buf.getvalue()
    extra = [(k, cell(data[k])) for k in COLUMNS if data[k] is not None
             and k not in ("name", "group", "formula", "method", "task")]
    write_sdf([(best, job_dir)], buf, extra=extra)
    return buf.getvalue()
