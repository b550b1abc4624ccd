"""Building a result from what xtb left in its folder (recorded runs), and artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from qforge_runner.harness import OutputError, artifacts, collect_result
from qforge_runner.spec import Method, Task
from tests.unit.runner.helpers import recorded, water_spec


def test_water_gfn2_opt(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(), 0.5)
    assert result.energy == pytest.approx(-5.0705444, abs=1e-6)
    assert result.energy == -5.07054417  # xtbout.json's 8 decimals
    assert result.gap == pytest.approx(14.38, abs=0.01)
    assert result.dipole == (-0.0, 0.0, -0.873)  # the final one, from the text
    assert result.partial_charges == pytest.approx((-0.5646, 0.2823, 0.2823), abs=1e-4)
    assert result.geometry is not None and result.geometry.formula == "H2O"
    assert result.geometry.geometry[1][1] == pytest.approx(0.772381, abs=1e-6)
    assert result.frequencies is None
    assert result.converged is True
    assert result.xtb_version == "6.5.1 (unknown)"
    assert (result.method, result.task, result.wall_time) == (Method.gfn2, Task.opt, 0.5)
    assert result.formula == "H2O"
    q = result.quality
    assert (q.ok, q.converged, q.gap_ok, q.from_text_output, q.warnings) \
        == (True, True, True, False, ())


def test_json_dipole_is_kept_when_it_agrees_with_the_text(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    stdout = run.stdout.replace("   full:       -0.000       0.000      -0.873",
                                "   full:       -0.000       0.000      -0.896")
    result = collect_result(run.scratch(tmp_path), stdout, water_spec(), 0.5)
    assert result.dipole == (-0.0, 0.0, -0.89636557)


def test_gfnff_opt_falls_back_to_text_and_is_flagged(tmp_path: Path) -> None:
    run = recorded("water_gfnff_opt")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(method="gfnff"), 0.1)
    assert result.energy == pytest.approx(-0.327655997664, abs=1e-12)
    assert result.gap is None and result.dipole is None
    assert result.partial_charges is not None and len(result.partial_charges) == 3  # gfnff_charges
    assert result.geometry is not None
    assert result.quality.from_text_output is True
    assert result.quality.ok is True and result.quality.gap_ok is True
    assert result.quality.warnings == ()


def test_broken_json_falls_back_to_text_with_a_warning(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    scratch = run.scratch(tmp_path)
    (scratch / "xtbout.json").write_text('{\n   "total energy":  ******,\n')
    result = collect_result(scratch, run.stdout, water_spec(), 0.5)
    assert result.energy == -5.070544172184  # the text's 12 decimals
    assert result.gap == pytest.approx(14.373571782973)
    assert result.partial_charges is not None  # from the charges file
    assert result.quality.from_text_output is True
    assert result.quality.ok is True
    assert result.quality.warnings[0].startswith("xtbout.json unusable (not valid JSON")


def test_missing_json_of_an_xtb_method_is_flagged(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    scratch = run.scratch(tmp_path)
    (scratch / "xtbout.json").unlink()
    result = collect_result(scratch, run.stdout, water_spec(), 0.5)
    assert result.quality.from_text_output is True
    assert result.quality.warnings == ("xtbout.json missing: values from xtb's text output",)


def test_ohess_frequencies(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    result = collect_result(run.scratch(tmp_path), run.stdout, water_spec(task="ohess"), 1.0)
    assert result.frequencies == pytest.approx((1540.86, 3638.12, 3646.41), abs=0.01)
    assert result.quality.imaginary_frequencies == 0
    assert result.quality.ok is True


def test_frequencies_from_vibspectrum_without_json(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    scratch = run.scratch(tmp_path)
    (scratch / "xtbout.json").unlink()
    result = collect_result(scratch, run.stdout, water_spec(task="ohess"), 1.0)
    assert result.frequencies == (1540.86, 3638.12, 3646.41)


def test_an_imaginary_frequency_fails_the_quality_check(tmp_path: Path) -> None:
    run = recorded("water_gfn2_ohess")
    scratch = run.scratch(tmp_path)
    (scratch / "xtbout.json").unlink()
    vib = (scratch / "vibspectrum").read_text().replace("1540.86", "-321.50")
    (scratch / "vibspectrum").write_text(vib)
    result = collect_result(scratch, run.stdout, water_spec(task="ohess"), 1.0)
    assert result.frequencies is not None and result.frequencies[0] == -321.5
    assert result.quality.imaginary_frequencies == 1
    assert result.quality.ok is False
    assert any(w.startswith("1 imaginary frequency (lowest -321.5 cm⁻¹): the structure is "
                            "not a minimum") for w in result.quality.warnings)


def test_no_energy_anywhere_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no total energy"):
        collect_result(tmp_path, "nothing useful\n", water_spec(task="sp"), 0.1)


def test_opt_without_xtbopt_xyz_is_an_output_error(tmp_path: Path) -> None:
    run = recorded("water_gfn2_opt")
    scratch = run.scratch(tmp_path)
    (scratch / "xtbopt.xyz").unlink()
    with pytest.raises(OutputError, match=r"no xtbopt\.xyz"):
        collect_result(scratch, run.stdout, water_spec(), 0.1)


def test_artifacts_to_copy_and_stale_ones_removed(tmp_path: Path) -> None:
    scratch = recorded("water_gfn2_opt").scratch(tmp_path)
    (scratch / "xtb.log").write_text("log\n")
    (scratch / "input.xyz").write_text("not copied\n")
    job = tmp_path / "job"
    job.mkdir()
    (job / "vibspectrum").write_text("stale, from an earlier attempt\n")
    (job / "input.xyz").write_text("the user's\n")
    items = artifacts(scratch, job)
    assert {dst.name for dst, _ in items} == {"xtbout.json", "xtbopt.xyz", "charges", "xtb.log"}
    assert all(dst.parent == job and src == scratch / dst.name for dst, src in items)
    assert not (job / "vibspectrum").exists()  # a stale copy of an earlier attempt
    assert (job / "input.xyz").read_text() == "the user's\n"  # never touched
