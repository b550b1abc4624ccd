"""The quality assessment rules."""

from __future__ import annotations

from qforge_runner.quality import IMAGINARY_CUTOFF, MIN_GAP_EV, assess
from qforge_runner.spec import Method


def test_a_clean_result_is_ok() -> None:
    q = assess(method=Method.gfn2, converged=True, gap=14.4, frequencies=(1540.0,),
               from_text_output=False)
    assert (q.ok, q.gap_ok, q.imaginary_frequencies, q.warnings) == (True, True, 0, ())


def test_small_or_negative_gap_is_flagged() -> None:
    for gap in (0.05, MIN_GAP_EV, -23.9):
        q = assess(method=Method.gfn2, converged=True, gap=gap, frequencies=None,
                   from_text_output=False)
        assert not q.gap_ok and not q.ok
        assert q.warnings[0].startswith(f"HOMO-LUMO gap {gap:.3f} eV is below 0.1 eV")


def test_missing_gap_is_flagged_except_for_gfnff() -> None:
    q = assess(method=Method.gfn1, converged=True, gap=None, frequencies=None,
               from_text_output=True)
    assert not q.gap_ok and q.warnings == ("no HOMO-LUMO gap found in xtb's output",)
    ff = assess(method=Method.gfnff, converged=True, gap=None, frequencies=None,
                from_text_output=True)
    assert ff.gap_ok and ff.ok and ff.from_text_output


def test_imaginary_frequencies_below_the_cutoff_count() -> None:
    q = assess(method=Method.gfn2, converged=True, gap=5.0,
               frequencies=(IMAGINARY_CUTOFF + 1, -250.0, -90.0, 100.0), from_text_output=False)
    assert q.imaginary_frequencies == 2
    assert not q.ok
    assert q.warnings == ("2 imaginary frequencies (lowest -250.0 cm⁻¹): the structure is not "
                          "a minimum",)


def test_not_converged_is_not_ok_and_given_warnings_are_kept() -> None:
    q = assess(method=Method.gfn2, converged=False, gap=5.0, frequencies=None,
               from_text_output=False, warnings=["from xtb"])
    assert not q.ok
    assert q.warnings == ("from xtb", "the calculation did not converge")
