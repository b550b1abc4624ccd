"""Thermochemistry from xtb's text output (real outputs of xtb 6.5.1, recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qforge_runner.harness import collect_result
from qforge_runner.thermo import ThermoMissing, parse_thermo
from tests.unit.runner.helpers import recorded, water_spec

THERMO = Path(__file__).parent / "fixtures" / "thermo"


def test_the_values_are_read_as_xtb_printed_them() -> None:
    thermo = parse_thermo((THERMO / "water_gfn2_hess_298K.txt").read_text())
    assert thermo.temperature == 298.15
    assert thermo.zpe == 0.020297021404
    assert thermo.enthalpy == -5.046293052395
    assert thermo.ts == 0.0214061
    assert thermo.g_rrho == 0.002671615783
    assert thermo.free_energy == -5.067699146062


def test_another_temperature_is_read_from_the_table() -> None:
    thermo = parse_thermo((THERMO / "water_gfn2_ohess_350K.txt").read_text())
    assert thermo.temperature == 350.0
    assert thermo.ts == 0.02584
    assert thermo.free_energy == -5.071813124795
    # the parts add up as xtb defines them (T·S has xtb's 6 printed digits)
    assert thermo.free_energy == pytest.approx(-5.070544374391 + thermo.g_rrho, abs=1e-11)
    assert thermo.enthalpy - thermo.ts == pytest.approx(thermo.free_energy, abs=1e-7)


@pytest.mark.parametrize(("cut", "message"), [
    ("T/K    H(0)-H(T)+PV", "no thermochemistry table"),
    (":: zero point energy", "no 'zero point energy' line"),
    ("| TOTAL ENTHALPY", "no 'TOTAL ENTHALPY' line"),
])
def test_a_missing_part_is_named(cut: str, message: str) -> None:
    text = (THERMO / "water_gfn2_hess_298K.txt").read_text()
    broken = "\n".join(line for line in text.splitlines() if cut not in line)
    with pytest.raises(ThermoMissing, match=message):
        parse_thermo(broken)


def test_an_ohess_result_carries_the_thermochemistry(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(task="ohess"), 1.0)
    assert result.thermochemistry is not None
    assert result.thermochemistry.temperature == 298.15
    assert result.thermochemistry.free_energy == pytest.approx(
        result.energy + result.thermochemistry.g_rrho, abs=1e-8)
    assert result.quality.ok is True
    summary = result.summary().thermochemistry
    assert summary is not None and summary.zpe == result.thermochemistry.zpe


def test_a_missing_block_is_a_quality_flag_not_a_crash(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    stdout = run.stdout.replace("TOTAL ENTHALPY", "TOTAL ENTHALP")
    result = collect_result(run.scratch(tmp_path), stdout, water_spec(task="ohess"), 1.0)
    assert result.thermochemistry is None
    assert result.quality.ok is False
    assert result.quality.warnings == (
        "no thermochemistry: xtb's output has no 'TOTAL ENTHALPY' line",)


def test_a_thermochemistry_at_another_temperature_than_asked_is_flagged(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    spec = water_spec(task="ohess", temperature=400)
    result = collect_result(run.scratch(tmp_path), run.stdout, spec, 1.0)
    assert result.thermochemistry is None
    assert result.quality.warnings == (
        "no thermochemistry: xtb computed it at 298.15 K, not at the job's 400 K",)


def test_other_tasks_have_none_and_no_flag(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(), 1.0)
    assert result.thermochemistry is None
    assert result.quality.ok is True
