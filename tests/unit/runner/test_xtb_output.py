"""Parsing recorded real xtb 6.5.1 outputs (fixtures/, made by fixtures/record.py)."""

from __future__ import annotations

import pytest

from qforge_runner.xtb_output import (
    is_linear,
    parse_charges,
    parse_json_output,
    parse_text_output,
    parse_vibspectrum,
    tail,
    vibrational_frequencies,
)
from tests.unit.runner.helpers import FIXTURES, recorded, water

WATER_ENERGY = -5.070544172184  # GFN2-xTB, optimised (xtb's text output, 12 decimals)


def test_json_of_a_water_opt() -> None:
    js = parse_json_output((FIXTURES / "water_gfn2_opt" / "xtbout.json").read_text())
    assert js.problem is None
    assert js.energy == pytest.approx(WATER_ENERGY, abs=1e-8)
    assert js.gap == pytest.approx(14.37357178)
    assert js.partial_charges == pytest.approx((-0.56461491, 0.28230745, 0.28230745))
    assert js.xtb_version == "6.5.1 (unknown)"
    assert js.dipole is not None
    assert js.frequencies is None


def test_text_of_a_water_opt() -> None:
    text = parse_text_output(recorded("water_gfn2_opt").stdout)
    assert text.energy == WATER_ENERGY  # the final box, not the first single point
    assert text.gap == pytest.approx(14.373571782973)
    assert text.dipole == (-0.0, 0.0, -0.873)  # a.u., the final geometry's
    assert text.xtb_version == "6.5.1 (unknown)"
    assert text.opt_converged is True
    assert text.opt_cycles == 4
    assert text.warnings == () and text.errors == ()


def test_json_dipole_of_an_opt_is_the_first_single_points() -> None:
    """Why the harness takes the dipole from the text: xtb 6.5.1's JSON keeps the input
    geometry's dipole (-0.896) after an optimisation (final: -0.873)."""
    js = parse_json_output((FIXTURES / "water_gfn2_opt" / "xtbout.json").read_text())
    assert js.dipole is not None
    assert js.dipole[2] == pytest.approx(-0.89636557)


def test_text_of_a_gfnff_opt_has_energy_but_no_gap() -> None:
    run = recorded("water_gfnff_opt")
    assert "xtbout.json" not in run.files  # GFN-FF writes no JSON
    text = parse_text_output(run.stdout)
    assert text.energy == pytest.approx(-0.327655997664, abs=1e-12)
    assert text.gap is None
    assert text.opt_converged is True
    assert text.warnings == ()  # the topology warning of GFN-FF's first run is benign


def test_text_of_a_failed_opt() -> None:
    text = parse_text_output(recorded("opt_not_converged").stdout)
    assert text.opt_converged is False
    assert text.opt_cycles == 2


def test_error_block_is_read_root_cause_last() -> None:
    text = parse_text_output(recorded("scc_not_converged").stdout)
    assert text.errors == (
        "Single point calculation terminated",
        "xtb_calculator_singlepoint: Electronic structure method terminated",
        "scf: Self consistent charge iterator did not converge",
    )
    assert text.energy is None


def test_vibspectrum_lists_all_3n_modes() -> None:
    modes = parse_vibspectrum((FIXTURES / "water_gfn2_ohess" / "vibspectrum").read_text())
    assert len(modes) == 9
    assert modes[-3:] == (1540.86, 3638.12, 3646.41)
    assert all(abs(m) < 0.01 for m in modes[:6])


def test_json_frequencies_of_an_ohess() -> None:
    js = parse_json_output((FIXTURES / "water_gfn2_ohess" / "xtbout.json").read_text())
    assert js.frequencies is not None and len(js.frequencies) == 9
    assert js.frequencies[6] == pytest.approx(1540.86, abs=0.01)


def test_vibrational_frequencies_drop_translations_and_rotations() -> None:
    modes = parse_vibspectrum((FIXTURES / "water_gfn2_ohess" / "vibspectrum").read_text())
    assert vibrational_frequencies(modes, water().geometry) == (1540.86, 3638.12, 3646.41)
    # linear: 3N-5; an imaginary mode is kept (the ~0 modes are the ones dropped)
    co2 = ((0.0, 0.0, -1.16), (0.0, 0.0, 0.0), (0.0, 0.0, 1.16))
    modes = (-0.01, 0.0, 0.0, 0.02, 0.0, -150.0, 667.0, 1333.0, 2349.0)
    assert vibrational_frequencies(modes, co2) == (-150.0, 667.0, 1333.0, 2349.0)
    assert vibrational_frequencies((0.0, 0.0, 0.0), ((0.0, 0.0, 0.0),)) == ()


def test_linear_molecules() -> None:
    assert is_linear(((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
    assert is_linear(((0.0, 0.0, -1.16), (0.0, 0.0, 0.0), (0.0, 0.0, 1.16)))
    assert is_linear(((1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (3.0, 3.0, 3.0), (-1.0, -1.0, -1.0)))
    assert not is_linear(water().geometry)


def test_charges_files() -> None:
    assert parse_charges((FIXTURES / "water_gfn2_opt" / "charges").read_text()) \
        == pytest.approx((-0.56461491, 0.28230745, 0.28230745))
    assert len(parse_charges((FIXTURES / "water_gfnff_opt" / "gfnff_charges").read_text())) == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON (line 1"),
        ("[1, 2]", "not a JSON object"),
        ('{"total energy": "****"}', "no finite 'total energy'"),
        ('{"total energy": NaN}', "no finite 'total energy'"),
        ("{}", "no finite 'total energy'"),
    ],
)
def test_broken_json_is_reported_not_raised(text: str, problem: str) -> None:
    js = parse_json_output(text)
    assert js.energy is None
    assert js.problem is not None and problem in js.problem


def test_json_with_odd_fields_keeps_what_is_usable() -> None:
    js = parse_json_output('{"total energy": -1.5, "HOMO-LUMO gap/eV": null, '
                           '"dipole": [1, 2], "partial charges": [0.1, "x"]}')
    assert js.energy == -1.5
    assert js.gap is None and js.dipole is None and js.partial_charges is None


def test_tail_drops_backtraces() -> None:
    stderr = recorded("scc_not_converged").stderr + "#0  0x7f in ???\n\tat ../csu/libc.c:360\n"
    out = tail(stderr)
    assert "0x7f" not in out and "libc" not in out
    assert "ERROR STOP" in out
    assert tail("a\n" * 100, lines=3) == "a\na\na"
