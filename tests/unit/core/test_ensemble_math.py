"""The ensemble arithmetic (qforge.service.ensemble) against hand computations."""

from __future__ import annotations

import math

import pytest

from qforge.service.ensemble import (
    DUPLICATE_ENERGY_EH,
    KB_EH_PER_K,
    Conformer,
    boltzmann_weights,
    collapse,
    ensemble_counts,
    ensemble_line,
    rmsd,
    summarize,
    weighted,
)

SQUARE = ((0.0, 0.0, 0.0), (1.5, 0.0, 0.0), (1.5, 1.5, 0.0), (0.0, 1.5, 0.3))


def _rotated(coords: tuple[tuple[float, float, float], ...], angle: float,
             shift: float) -> tuple[tuple[float, float, float], ...]:
    c, s = math.cos(angle), math.sin(angle)
    return tuple((c * x - s * y + shift, s * x + c * y - shift, z + 2 * shift)
                 for x, y, z in coords)


def test_boltzmann_weights_match_a_hand_computation_and_sum_to_one() -> None:
    # kT at 298.15 K = 3.166811563e-6 * 298.15 = 9.44184868e-4 Eh; by hand:
    # exp(-0.001 / kT) = exp(-1.0591146) = 0.3467627; exp(-0.002 / kT) = 0.1202444
    # Z = 1.4670071: w = 0.6816600, 0.2363742, 0.0819658
    w = boltzmann_weights([-10.0, -9.999, -9.998], 298.15)
    assert w == pytest.approx([0.6816600, 0.2363742, 0.0819658], abs=2e-7)
    assert math.fsum(w) == pytest.approx(1.0, abs=1e-15)
    assert pytest.approx(9.44184868e-4, rel=1e-8) == KB_EH_PER_K * 298.15


def test_weights_do_not_depend_on_the_order_and_flatten_when_hot() -> None:
    assert boltzmann_weights([-9.998, -10.0], 298.15)[1] == pytest.approx(
        boltzmann_weights([-10.0, -9.998], 298.15)[0])
    hot = boltzmann_weights([-10.0, -9.999], 1e9)
    assert hot == pytest.approx([0.5, 0.5], abs=1e-6)
    assert boltzmann_weights([], 298.15) == []
    with pytest.raises(ValueError):
        boltzmann_weights([-1.0], 0.0)


def test_a_weighted_property_leaves_out_the_conformers_without_it() -> None:
    assert weighted([2.0, 4.0], [0.75, 0.25]) == pytest.approx(2.5)
    assert weighted([2.0, None], [0.75, 0.25]) == pytest.approx(2.0)
    assert weighted([None, None], [0.5, 0.5]) is None


def test_rmsd_after_superposition() -> None:
    assert rmsd(SQUARE, _rotated(SQUARE, 1.1, 3.0)) == pytest.approx(0.0, abs=1e-9)
    moved = (*SQUARE[:3], (0.0, 1.5, 1.3))  # one atom of four 1 Å away, before fitting
    assert 0.0 < rmsd(SQUARE, moved) < 0.5
    assert rmsd(((0.0, 0.0, 0.0),), ((5.0, 5.0, 5.0),)) == 0.0
    assert rmsd(SQUARE, SQUARE[:3]) == math.inf
    # a mirror image is not superimposable: no reflections
    mirror = tuple((x, y, -z) for x, y, z in SQUARE)
    assert rmsd(SQUARE, mirror) > 0.05


def test_duplicates_within_both_thresholds_collapse_to_the_lower() -> None:
    a = Conformer("a", -10.0, 5.0, 1.0, SQUARE)
    same = Conformer("b", -10.0 + DUPLICATE_ENERGY_EH / 2, 5.1, 1.1, _rotated(SQUARE, 0.4, 1.0))
    other_energy = Conformer("c", -10.0 + 3 * DUPLICATE_ENERGY_EH, 5.0, 1.0, SQUARE)
    other_shape = Conformer("d", -10.0 + DUPLICATE_ENERGY_EH / 4, 5.0, 1.0,
                            (*SQUARE[:3], (0.0, 1.5, 2.3)))
    kept = collapse([same, other_energy, a, other_shape])
    assert [c.job_id for c in kept] == ["a", "d", "c"]


def test_the_summary_of_an_ensemble() -> None:
    far = (*SQUARE[:3], (0.0, 1.5, 2.3))
    confs = [Conformer("x", -10.0, 4.0, 2.0, SQUARE), Conformer("y", -9.999, 6.0, None, far),
             Conformer("x2", -10.0, 4.0, 2.0, SQUARE)]  # a duplicate of x
    s = summarize(confs, 298.15)
    assert s is not None
    assert s.best.job_id == "x" and [c.job_id for c in s.distinct] == ["x", "y"]
    w0 = 1 / (1 + math.exp(-0.001 / (KB_EH_PER_K * 298.15)))
    assert s.weights == pytest.approx((w0, 1 - w0))
    assert s.energy == pytest.approx(w0 * -10.0 + (1 - w0) * -9.999, abs=1e-12)
    assert s.gap == pytest.approx(w0 * 4.0 + (1 - w0) * 6.0)
    assert s.dipole == pytest.approx(2.0)  # y has none
    assert summarize([], 298.15) is None


def test_molecule_counts_only_for_groups_of_ensembles() -> None:
    single = [("j1", "m1", False, True, "water"), ("j2", "m2", False, False, "benzene")]
    assert ensemble_counts(single) is None
    members = [("a1", "ma", False, True, "a.c01"), ("a2", "ma", False, True, "a.c02"),
               ("b1", "mb", False, True, "b.c01"), ("b2", "mb", False, False, "b.c02"),
               ("h1", "ma", True, False, "a_hess"),  # a follow-up: not a conformer job
               ("old", None, False, True, "old")]  # no key: a molecule of its own
    assert ensemble_counts(members) == (2, 3, 4, 5)
    assert ensemble_line((132, 200, 1840, 2000)) == (
        "132 of 200 molecules complete; 1,840 of 2,000 conformer jobs")
    # one conformer each (rigid molecules) still counts as an ensemble by its names
    assert ensemble_counts([("w", "mw", False, True, "water.c01")]) == (1, 1, 1, 1)
