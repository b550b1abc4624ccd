"""Molecules: XYZ and QCSchema parsing, validation, formula and XYZ output."""

from __future__ import annotations

import json
import math
import random

import pytest
from pydantic import ValidationError

import qforge_runner.molecule as molecule_module
from qforge_runner.errors import InputError
from qforge_runner.molecule import (
    BOHR_TO_ANGSTROM,
    MIN_DISTANCE,
    Molecule,
    _closest_clash,
    parse_molecule,
    parse_qcschema_molecule,
    parse_xyz,
    qcschema_charge_uhf,
)
from qforge_runner.spec import JobSpec
from tests.unit.runner.helpers import WATER, water


def test_xyz_water_is_parsed_in_angstrom() -> None:
    mol = parse_xyz(WATER)
    assert mol.symbols == ("O", "H", "H")
    assert mol.geometry[1] == (0.0, 0.755453, -0.471161)
    assert mol.comment == "water"
    assert mol.natoms == 3
    assert mol.nuclear_charge_sum() == 10


def test_xyz_symbols_are_case_insensitive_and_atomic_numbers_accepted() -> None:
    mol = parse_xyz("3\n\ncl 0 0 0\nBR 0 0 2.5\n8 0 0 5\n")
    assert mol.symbols == ("Cl", "Br", "O")


def test_xyz_tolerates_blank_lines_around_and_extra_columns() -> None:
    mol = parse_xyz("\n\n2\nH2\nH 0 0 0 0.1 extra\nH 0 0 0.74\n\n\n")
    assert mol.symbols == ("H", "H")
    assert mol.geometry[1] == (0.0, 0.0, 0.74)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the molecule is empty"),
        ("three\nwater\nO 0 0 0\n", "line 1: expected the number of atoms, got 'three'"),
        ("0\nnothing\n", "line 1: the molecule has no atoms"),
        ("3\nwater\nO 0 0 0\nH 0 0 0.97\n", "line 1 says 3 atoms but 2 atom lines follow"),
        ("1\nwater\nO 0 0 0\nH 0 0 0.97\n", "line 1 says 1 atom but 2 atom lines follow"),
        ("1\nH\nH 0 0 0\n1\nH\nH 0 0 0\n", "line 4: a second structure starts here"),
        ("2\nOH\nO 0 0 0\nXx 0 0 0.97\n", "line 4: unknown element 'Xx'"),
        ("2\nOH\nO 0 0\nH 0 0 0.97\n", "line 3: expected 'symbol x y z', got 'O 0 0'"),
        ("2\nOH\nO 0 0 0\n\nH 0 0 0.97\n", "line 4: expected 'symbol x y z', got an empty line"),
        ("2\nOH\nO 0 zero 0\nH 0 0 0.97\n", "line 3: y coordinate 'zero' is not a number"),
        ("2\nOH\nO 0 0 0\nH 0 0 nan\n", "line 4: z coordinate 'nan' is not finite"),
        ("2\nOH\nO inf 0 0\nH 0 0 0.97\n", "line 3: x coordinate 'inf' is not finite"),
        ("2\nHH\nH 0 0 0\nH 0 0 0.1\n", "atoms 1 (H) and 2 (H) are 0.100 Å apart"),
    ],
)
def test_xyz_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_xyz(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


def test_formula_in_hill_order() -> None:
    assert water().formula == "H2O"
    caffeine_atoms = ["C"] * 8 + ["H"] * 10 + ["N"] * 4 + ["O"] * 2
    geometry = tuple((float(i), 0.0, 0.0) for i in range(len(caffeine_atoms)))
    assert Molecule(symbols=tuple(reversed(caffeine_atoms)), geometry=geometry).formula \
        == "C8H10N4O2"
    salt = Molecule(symbols=("Na", "Cl"), geometry=((0, 0, 0), (0, 0, 2.4)))
    assert salt.formula == "ClNa"  # no carbon: all alphabetical
    methanol = parse_xyz("6\n\nO 0 0 0\nH 0 0 1\nC 0 1.4 0\nH 1 1.4 0\nH -1 1.4 0\nH 0 2.4 0\n")
    assert methanol.formula == "CH4O"


def test_to_xyz_round_trips() -> None:
    mol = water()
    again = parse_xyz(mol.to_xyz())
    assert again == mol
    assert mol.to_xyz().splitlines()[0] == "3"


def test_model_is_frozen_and_forbids_extra_fields() -> None:
    mol = water()
    with pytest.raises(ValidationError):
        mol.comment = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Molecule(symbols=("H",), geometry=((0, 0, 0),), charge=1)  # type: ignore[call-arg]


def test_model_validation_messages() -> None:
    with pytest.raises(ValidationError, match="atom 2: unknown element 'Q'"):
        Molecule(symbols=("H", "Q"), geometry=((0, 0, 0), (0, 0, 1)))
    with pytest.raises(ValidationError, match="2 element symbols but 1 coordinate triples"):
        Molecule(symbols=("H", "H"), geometry=((0, 0, 0),))
    with pytest.raises(ValidationError, match="the molecule has no atoms"):
        Molecule(symbols=(), geometry=())
    with pytest.raises(ValidationError, match=r"atom 1 \(H\): x coordinate nan is not finite"):
        Molecule(symbols=("H",), geometry=((math.nan, 0, 0),))


def test_multiline_comment_becomes_one_line() -> None:
    mol = Molecule(symbols=("H",), geometry=((0, 0, 0),), comment="a\nb")
    assert mol.comment == "a b"
    assert len(mol.to_xyz().splitlines()) == 3


def test_clash_detection_scales_to_many_atoms() -> None:
    # a 20x20x20 grid with 1.5 Å spacing: 8000 atoms, no clash, found quickly by the grid
    n = 20
    geometry = tuple((1.5 * i, 1.5 * j, 1.5 * k) for i in range(n) for j in range(n)
                     for k in range(n))
    mol = Molecule(symbols=("He",) * len(geometry), geometry=geometry)
    assert mol.natoms == 8000
    with pytest.raises(ValidationError, match="atoms 1 \\(He\\) and 8001 \\(He\\)"):
        Molecule(symbols=("He",) * (len(geometry) + 1), geometry=(*geometry, (0.2, 0.2, 0.2)))


# ------------------------------------------------------------------------ QCSchema

def _qc_water(**extra: object) -> dict[str, object]:
    mol = water()
    data: dict[str, object] = {
        "schema_name": "qcschema_molecule",
        "schema_version": 2,
        "symbols": list(mol.symbols),
        "geometry": mol.geometry_bohr(),
    }
    data.update(extra)
    return data


def test_qcschema_geometry_is_converted_from_bohr() -> None:
    mol = parse_qcschema_molecule(_qc_water())
    assert mol.symbols == ("O", "H", "H")
    for got, want in zip(mol.geometry, water().geometry, strict=True):
        assert got == pytest.approx(want, abs=1e-12)
    one_bohr = parse_qcschema_molecule({"symbols": ["He"], "geometry": [1.0, 0.0, 0.0]})
    assert one_bohr.geometry[0][0] == pytest.approx(BOHR_TO_ANGSTROM)


def test_qcschema_accepts_nested_geometry_and_name() -> None:
    flat = _qc_water()["geometry"]
    assert isinstance(flat, list)
    nested = [flat[i:i + 3] for i in range(0, 9, 3)]
    mol = parse_qcschema_molecule(_qc_water(geometry=nested, name="water"))
    assert mol.comment == "water"
    assert mol.natoms == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"geometry": [0, 0, 0]}, "'symbols' is missing"),
        ({"symbols": ["H"]}, "'geometry' is missing"),
        ({"symbols": "H", "geometry": [0, 0, 0]}, "'symbols' must be a list"),
        ({"symbols": [], "geometry": []}, "QCSchema molecule: the molecule has no atoms"),
        ({"symbols": ["H"], "geometry": "0 0 0"}, "'geometry' must be a list of numbers"),
        ({"symbols": ["H"], "geometry": [0, True, 0]}, "geometry[1] (True) is not a number"),
        ({"symbols": ["H", "Zz"], "geometry": [0] * 6}, "symbols[1]: unknown element 'Zz'"),
        ({"symbols": ["H", "H"], "geometry": [0, 0, 0, 0, 0]},
         "geometry has 5 numbers but 2 atoms need 6"),
        ({"symbols": ["H"], "geometry": [0, "x", 0]}, "geometry[1] ('x') is not a number"),
        ({"symbols": ["H"], "geometry": [0, 0, math.inf]}, "geometry[2] (inf) is not finite"),
        ({"symbols": ["H"], "geometry": [0, 0, 0], "schema_name": "qcschema_input"},
         "schema_name 'qcschema_input'"),
        ({"symbols": ["H", "H"], "geometry": [0, 0, 0, 0, 0, 1.4], "real": [True, False]},
         "ghost atoms"),
        ({"symbols": ["H", "H"], "geometry": [0, 0, 0, 0, 0, 0.1]},
         "QCSchema molecule: atoms 1 (H) and 2 (H)"),
    ],
)
def test_qcschema_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_qcschema_molecule(data)
    assert message in str(info.value)


def test_qcschema_charge_and_multiplicity() -> None:
    assert qcschema_charge_uhf(_qc_water()) == (0, 0)
    assert qcschema_charge_uhf(_qc_water(molecular_charge=1.0, molecular_multiplicity=2)) \
        == (1, 1)
    hydroxyl = {"symbols": ["O", "H"], "geometry": [0, 0, 0, 0, 0, 1.8]}
    assert qcschema_charge_uhf(hydroxyl) == (0, 1)  # lowest multiplicity for 9 electrons
    assert qcschema_charge_uhf({**hydroxyl, "molecular_charge": -1}) == (-1, 0)
    with pytest.raises(InputError, match=r"molecular_charge 0\.5 is not a whole number"):
        qcschema_charge_uhf(_qc_water(molecular_charge=0.5))
    with pytest.raises(InputError, match="molecular_multiplicity 0 is not a whole number ≥ 1"):
        qcschema_charge_uhf(_qc_water(molecular_multiplicity=0))
    with pytest.raises(InputError, match=r"molecular_charge \('1'\) is not a number"):
        qcschema_charge_uhf(_qc_water(molecular_charge="1"))
    with pytest.raises(InputError, match="expected a JSON object"):
        qcschema_charge_uhf([])  # type: ignore[arg-type]


def test_parse_molecule_tells_json_from_xyz() -> None:
    assert parse_molecule(WATER) == water()
    from_json = parse_molecule(json.dumps(_qc_water()))
    assert from_json.symbols == ("O", "H", "H")
    with pytest.raises(InputError, match="molecule JSON, line 1 column 2"):
        parse_molecule("{nope")
    with pytest.raises(InputError, match="expected a JSON object"):
        parse_qcschema_molecule([1, 2])  # type: ignore[arg-type]


def _brute_force_clash(geometry: tuple[tuple[float, float, float], ...]) -> bool:
    return any(math.dist(geometry[i], geometry[j]) < MIN_DISTANCE
               for i in range(len(geometry)) for j in range(i))


@pytest.mark.parametrize("natoms", [2, 5, 24, 25, 60])
def test_clash_check_agrees_with_every_pair_on_both_paths(natoms: int) -> None:
    # up to 24 atoms every pair is compared, above that the grid: both must find exactly
    # the clashes a brute-force comparison of every pair finds
    rng = random.Random(natoms)
    for _ in range(200):
        side = 0.6 * natoms ** (1 / 3)
        geometry = tuple((rng.uniform(0, side), rng.uniform(0, side), rng.uniform(0, side))
                         for _ in range(natoms))
        found = _closest_clash(geometry)
        assert (found is not None) == _brute_force_clash(geometry)
        if found is not None:
            j, i, dist = found
            assert j < i and dist < MIN_DISTANCE
            assert dist == pytest.approx(math.dist(geometry[i], geometry[j]))


def test_a_validated_molecule_handed_over_is_not_checked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mol = water()
    calls: list[int] = []
    monkeypatch.setattr(molecule_module, "_closest_clash",
                        lambda geometry: calls.append(len(geometry)))
    spec = JobSpec(molecule=mol)
    assert spec.molecule is mol and calls == []
    # plain data (a record read from disk, a dict) is validated, every time
    again = JobSpec.model_validate({"molecule": mol.model_dump()})
    assert again.molecule == mol and calls == [3]
    Molecule.model_validate_json(mol.model_dump_json())
    assert calls == [3, 3]


def test_a_clashing_molecule_from_data_is_still_refused() -> None:
    data = {"symbols": ["O", "H", "H"],
            "geometry": [[0, 0, 0], [0, 0, 0.3], [0, 0.76, -0.47]]}
    with pytest.raises(ValidationError, match=r"atoms 1 \(O\) and 2 \(H\) are 0.300 Å apart"):
        Molecule.model_validate(data)
    with pytest.raises(ValidationError, match="closer than"):
        JobSpec.model_validate({"molecule": data})
