"""The chemistry of a result in `qforge show` and the export columns: the
thermochemistry with its units, a changed structure, the columns' order."""

from __future__ import annotations

from typing import Any

from qforge.cli import render
from qforge.service.export import COLUMNS, export_row_data
from qforge_runner.quality import assess
from qforge_runner.result import JobResult
from qforge_runner.spec import Method, Task
from qforge_runner.summary import ResultSummary
from qforge_runner.thermo import Thermochemistry

THERMO = Thermochemistry(temperature=298.15, zpe=0.020297021404, enthalpy=-5.046293052395,
                         ts=0.0214061, g_rrho=0.002671615783, free_energy=-5.067699146062)


def _summary(*, thermo: Thermochemistry | None = None, moved: str | None = None,
             task: Task = Task.ohess) -> ResultSummary:
    quality = assess(method=Method.gfn2, converged=True, gap=14.38, frequencies=(1600.0,),
                     from_text_output=False, topology_change=moved)
    return JobResult(
        energy=-5.070370761845, gap=14.38, dipole=(0.0, 0.0, 0.7), partial_charges=None,
        geometry=None, frequencies=(1600.0,), converged=True, xtb_version="6.5.1",
        method=Method.gfn2, task=task, wall_time=1.0, quality=quality, thermochemistry=thermo,
        topology_changed=None if task is Task.hess else moved is not None).summary()


def _record(summary: ResultSummary | dict[str, Any]) -> dict[str, Any]:
    """A record as metadata.json holds it (the export reads those)."""
    if isinstance(summary, ResultSummary):
        summary = summary.model_dump(mode="json")
    return {"job_id": "water_1", "status": "COMPLETED", "group": "g", "result": summary,
            "spec": {"name": "water", "molecule": {"symbols": ["O", "H", "H"]},
                     "method": "gfn2", "task": summary["task"]}}


def test_the_columns_are_in_their_documented_order() -> None:
    assert COLUMNS[COLUMNS.index("converged") + 1] == "topology_changed"
    assert COLUMNS[COLUMNS.index("n_imaginary") + 1:COLUMNS.index("wall_time_s")] == (
        "temperature_k", "zpe_eh", "h_eh", "ts_eh", "g_rrho_eh", "free_energy_eh")


def test_a_hessian_row_carries_the_thermochemistry_in_eh() -> None:
    row = export_row_data(_record(_summary(thermo=THERMO)))
    assert (row["temperature_k"], row["zpe_eh"], row["h_eh"], row["ts_eh"], row["g_rrho_eh"],
            row["free_energy_eh"]) == (298.15, 0.020297021404, -5.046293052395, 0.0214061,
                                       0.002671615783, -5.067699146062)
    assert row["topology_changed"] is False


def test_a_row_without_thermochemistry_or_an_old_record_has_empty_cells() -> None:
    old = _summary().model_dump(mode="json")
    del old["thermochemistry"], old["topology_changed"]  # written before these existed
    row = export_row_data(_record(old))
    assert {row[c] for c in ("topology_changed", "zpe_eh", "free_energy_eh")} == {None}


def test_a_moved_proton_is_a_verdict_and_a_column() -> None:
    summary = _summary(moved="broken O1-H2; formed H2-O5")
    assert export_row_data(_record(summary))["topology_changed"] is True
    assert render.quality_text(summary.quality) == (
        "structure changed — the optimisation changed the bonds (broken O1-H2; formed H2-O5)")
    assert render.result_lines(summary)[4] == "Bonds:     CHANGED in the optimisation " \
        "(see Quality)"


def test_show_prints_the_thermochemistry_with_units_lined_up() -> None:
    lines = render.result_lines(_summary(thermo=THERMO))
    assert [line for line in lines if line.split(":")[0] in (
        "Thermo", "ZPE", "H", "T·S", "G(RRHO)", "G")] == [
        "Thermo:    RRHO at 298.15 K",
        "ZPE:       0.02029702 Eh",
        "H:         -5.04629305 Eh  (E + ZPE + H(0→T))",
        "T·S:       0.0214061 Eh",
        "G(RRHO):   0.00267162 Eh  (ZPE included)",
        "G:         -5.06769915 Eh  (E + G(RRHO))",
    ]
    for line in lines:
        assert line[10] == " " and line[11] != " ", line
