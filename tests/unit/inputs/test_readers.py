"""The readers of `qforge submit`: every format, naming, sniffing, errors and limits."""

from __future__ import annotations

import io
import json
import math
import re
import sys
from pathlib import Path

import pytest

from qforge.inputs import BadRecord, Format, Limits, ReadMolecule, expand_sources, read_sources
from qforge.inputs.chem import EMBED_SEED, smiles_to_molecule
from qforge.inputs.formats import sniff
from qforge.inputs.names import indexed_name, sanitize_name
from qforge_runner.errors import InputError
from qforge_runner.molecule import BOHR_TO_ANGSTROM
from tests.molecules import METHANE, WATER_EXPERIMENTAL

FIXTURES = Path(__file__).parent / "fixtures"


def read(*args: str, fmt: Format | None = None, limits: Limits | None = None
         ) -> list[ReadMolecule | BadRecord]:
    return list(read_sources(expand_sources(list(args), fmt), limits or Limits()))


def good(items: list[ReadMolecule | BadRecord]) -> list[ReadMolecule]:
    assert all(isinstance(i, ReadMolecule) for i in items), [str(i) for i in items]
    return [i for i in items if isinstance(i, ReadMolecule)]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------ XYZ
def test_a_single_xyz_file_is_named_after_the_file(tmp_path: Path) -> None:
    [mol] = good(read(write(tmp_path / "Water (exp).xyz", WATER_EXPERIMENTAL)))
    assert mol.name == "Water_exp"
    assert mol.molecule.formula == "H2O"
    assert mol.charge is None and mol.uhf is None  # XYZ carries neither


def test_concatenated_xyz_frames_become_indexed_molecules(tmp_path: Path) -> None:
    text = WATER_EXPERIMENTAL + "\n\n" + METHANE + WATER_EXPERIMENTAL
    mols = good(read(write(tmp_path / "confs.xyz", text)))
    assert [m.name for m in mols] == ["confs_1", "confs_2", "confs_3"]
    assert [m.molecule.formula for m in mols] == ["H2O", "CH4", "H2O"]
    assert mols[1].where.line == WATER_EXPERIMENTAL.count("\n") + 3


def test_a_bad_xyz_frame_names_its_molecule_and_the_files_line(tmp_path: Path) -> None:
    bad_water = WATER_EXPERIMENTAL.replace("H", "Xx", 1)
    text = WATER_EXPERIMENTAL + bad_water + WATER_EXPERIMENTAL
    items = read(write(tmp_path / "three.xyz", text))
    assert [type(i).__name__ for i in items] == ["ReadMolecule", "BadRecord", "ReadMolecule"]
    frame_lines = WATER_EXPERIMENTAL.count("\n")
    bad_line = frame_lines + 2 + next(i for i, line in enumerate(bad_water.splitlines())
                                      if line.startswith("Xx")) - 1
    assert str(items[1]) == (f"{tmp_path}/three.xyz:{frame_lines + 1}: molecule 2: "
                             f"line {bad_line}: unknown element 'Xx'")


def test_a_missing_atom_count_stops_reading_that_file(tmp_path: Path) -> None:
    items = read(write(tmp_path / "x.xyz", WATER_EXPERIMENTAL + "water\n" + WATER_EXPERIMENTAL))
    assert isinstance(items[0], ReadMolecule) and len(items) == 2
    assert "expected the number of atoms of a frame, got 'water'" in str(items[1])


# ------------------------------------------------------------------ SDF
def test_sdf_records_keep_hydrogens_titles_charges_and_radicals() -> None:
    mols = good(read(str(FIXTURES / "library.sdf")))
    assert [(m.name, m.molecule.formula, m.charge, m.uhf) for m in mols] == [
        ("acetate_anion", "C2H3O2", -1, 0),
        ("methyl_radical", "CH3", 0, 1),
        ("ammonium", "H4N", 1, 0),
    ]
    assert mols[0].molecule.geometry[0] == pytest.approx((-0.6680, -0.1074, 0.0199))
    assert [m.where.line for m in mols] == [1, 24, 41]


def test_a_2d_mol_file_is_embedded_in_3d_with_its_hydrogens() -> None:
    [mol] = good(read(str(FIXTURES / "ethanol_2d.mol")))
    assert mol.name == "ethanol_2D" and mol.molecule.formula == "C2H6O"
    assert any(abs(z) > 0.1 for _, _, z in mol.molecule.geometry)


def test_a_bad_sdf_record_is_reported_and_the_next_one_read(tmp_path: Path) -> None:
    records = (FIXTURES / "library.sdf").read_text().split("$$$$\n")
    broken = records[1].replace("  1  2  1  0", "  1  9  1  0")  # a bond to atom 9 of 4
    path = write(tmp_path / "lib.sdf", "$$$$\n".join([records[0], broken, records[2]]))
    items = read(path)
    assert [type(i).__name__ for i in items] == ["ReadMolecule", "BadRecord", "ReadMolecule"]
    assert str(items[1]).startswith(f"{path}:24: molecule 2: RDKit cannot read the record")


# --------------------------------------------------------------- SMILES
LIBRARY_SMI = """\
# a small library
SMILES Name
CCO ethanol
CC(=O)[O-] acetate
[CH2]C methylene? no: ethyl radical

c1ccccc1
"""


def test_smiles_become_3d_molecules_with_charge_and_unpaired_electrons(tmp_path: Path) -> None:
    mols = good(read(write(tmp_path / "lib.smi", LIBRARY_SMI)))
    assert [(m.name, m.molecule.formula, m.charge, m.uhf) for m in mols] == [
        ("ethanol", "C2H6O", 0, 0),
        ("acetate", "C2H3O2", -1, 0),
        ("methylene_no_ethyl_radical", "C2H5", 0, 1),
        ("lib_4", "C6H6", 0, 0),
    ]
    assert [m.where.line for m in mols] == [3, 4, 5, 7]
    benzene = mols[3].molecule
    assert benzene.natoms == 12
    ring = benzene.geometry[:6]
    bonds = [math.dist(ring[i], ring[(i + 1) % 6]) for i in range(6)]
    assert bonds == pytest.approx([1.39] * 6, abs=0.02)  # an MMFF94 benzene


def test_embedding_is_deterministic() -> None:
    first = smiles_to_molecule("CC(C)Cc1ccc(cc1)C(C)C(=O)O", max_atoms=100)
    again = smiles_to_molecule("CC(C)Cc1ccc(cc1)C(C)C(=O)O", max_atoms=100)
    assert first == again and EMBED_SEED == 20261201


def test_an_unparsable_smiles_and_an_embedding_failure_name_their_records(
        tmp_path: Path) -> None:
    path = write(tmp_path / "library.smi", "CCO\nC1CC broken ring\nC1=C2CCC1CC2 anti-Bredt\n")
    items = read(path)
    assert isinstance(items[0], ReadMolecule)
    assert [str(i) for i in items[1:]] == [
        f"{path}:2: molecule 2: cannot parse SMILES 'C1CC': unclosed ring",
        f"{path}:3: molecule 3: RDKit could not embed SMILES 'C1=C2CCC1CC2' in 3D "
        f"(ETKDGv3, seed {EMBED_SEED}): no 3D structure satisfies its distance bounds",
    ]


def test_rdkit_does_not_print_its_own_errors(tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    read(write(tmp_path / "x.smi", "C(C\nc1cccc1\n"))
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------- JSON
def qcschema(symbols: list[str], coords: list[float], **extra: object) -> dict[str, object]:
    return {"schema_name": "qcschema_molecule", "schema_version": 2, "symbols": symbols,
            "geometry": [c / BOHR_TO_ANGSTROM for c in coords], **extra}


WATER_QCS = qcschema(["O", "H", "H"], [0, 0, 0.1173, 0, 0.7572, -0.4692, 0, -0.7572, -0.4692],
                     name="water")
HYDROXIDE = qcschema(["O", "H"], [0, 0, 0, 0, 0, 0.97], molecular_charge=-1)
OH_RADICAL = qcschema(["O", "H"], [0, 0, 0, 0, 0, 0.97], molecular_multiplicity=2)


def test_a_json_list_of_qcschema_molecules(tmp_path: Path) -> None:
    path = write(tmp_path / "set.json", json.dumps([WATER_QCS, HYDROXIDE, OH_RADICAL]))
    mols = good(read(path))
    assert [(m.name, m.charge, m.uhf) for m in mols] == [
        ("water", 0, 0), ("set_2", -1, 0), ("set_3", 0, 1)]
    assert mols[0].molecule.geometry[1] == pytest.approx((0, 0.7572, -0.4692))


def test_one_qcschema_object_is_one_molecule_named_after_the_file(tmp_path: Path) -> None:
    [mol] = good(read(write(tmp_path / "oh.json", json.dumps(OH_RADICAL))))
    assert (mol.name, mol.uhf) == ("oh", 1)


def test_bad_json_items_are_reported_one_by_one(tmp_path: Path) -> None:
    bad = dict(WATER_QCS, symbols=["O", "Q", "H"])
    path = write(tmp_path / "set.json", json.dumps([WATER_QCS, bad, 5]))
    items = read(path)
    assert [str(i) for i in items[1:]] == [
        f"{path}: molecule 2: QCSchema molecule: symbols[1]: unknown element 'Q'",
        f"{path}: molecule 3: expected a QCSchema molecule (a JSON object)",
    ]
    [broken] = read(write(tmp_path / "b.json", '[{"symbols": ['))
    assert "not valid JSON (line 1 column" in str(broken)


# ---------------------------------------------------- folders, stdin, formats
def test_a_folder_gives_its_molecule_files_sorted(tmp_path: Path) -> None:
    write(tmp_path / "b.xyz", WATER_EXPERIMENTAL)
    write(tmp_path / "a.smi", "C methane\n")
    write(tmp_path / "notes.txt", "not a molecule")
    write(tmp_path / ".hidden.xyz", WATER_EXPERIMENTAL)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.xyz", WATER_EXPERIMENTAL)
    assert [m.name for m in good(read(str(tmp_path)))] == ["methane", "b"]


def test_an_empty_folder_or_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a folder with no molecule files"):
        read(str(tmp_path))
    with pytest.raises(InputError, match="no such file"):
        read(str(tmp_path / "nope.xyz"))


@pytest.mark.parametrize(("text", "fmt"), [
    (WATER_EXPERIMENTAL, Format.xyz),
    (json.dumps(WATER_QCS), Format.json),
    (json.dumps([WATER_QCS]), Format.json),
    ((FIXTURES / "library.sdf").read_text(), Format.sdf),
    ("[NH4+] ammonium\n", Format.smi),
    ("# header\nCCO\n", Format.smi),
    ("hello, world!\n", None),
])
def test_formats_are_sniffed_from_the_first_lines(text: str, fmt: Format | None) -> None:
    assert sniff(text) is fmt


def stdin_of(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_is_sniffed_or_read_in_the_named_format(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin_of(monkeypatch, b"C methane\nCC ethane\n")
    assert [m.name for m in good(read("-"))] == ["methane", "ethane"]
    stdin_of(monkeypatch, b"C\n")
    [mol] = good(read("-", fmt=Format.smi))
    assert mol.name == "stdin"


def test_stdin_of_an_unknown_format_asks_for_format(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin_of(monkeypatch, b"hello, world!\n")
    with pytest.raises(InputError, match=re.escape(
            "stdin: cannot tell the molecule format; name it with --format xyz|sdf|smi|json")):
        read("-")


def test_an_extension_wins_over_the_content_and_format_over_both(tmp_path: Path) -> None:
    path = write(tmp_path / "looks.xyz", "C methane\n")
    [bad] = read(path)
    assert isinstance(bad, BadRecord) and "expected the number of atoms" in str(bad)
    [mol] = good(read(path, fmt=Format.smi))
    assert mol.name == "methane"


def test_binary_and_empty_inputs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bin.xyz").write_bytes(b"3\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"bin.xyz:2: not UTF-8 text"):
        read(str(tmp_path / "bin.xyz"))
    with pytest.raises(InputError, match="empty, no molecule in it"):
        read(write(tmp_path / "e.xyz", "\n\n"))


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(("title", "name"), [
    ("aspirin", "aspirin"),
    ("  (S)-ibuprofen, 98% ", "S_-ibuprofen_98"),
    ("CHEMBL25 | acetylsalicylic acid", "CHEMBL25_acetylsalicylic_acid"),
    ("x" * 80, "x" * 63),
    ("a" * 62 + "-b", "a" * 62),
    ("***", ""),
])
def test_titles_are_sanitized_to_job_names(title: str, name: str) -> None:
    assert sanitize_name(title) == name


def test_indexed_names_stay_within_63_characters() -> None:
    name = indexed_name("s" * 70, 12345)
    assert len(name) == 63 and name.endswith("_12345")


# ----------------------------------------------------------------- limits
def test_files_over_the_byte_limit_are_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.xyz"
    with open(huge, "wb") as fh:  # a sparse 1 GiB file: reading it would take a while
        fh.truncate(1024**3)
    with pytest.raises(InputError, match=r"huge.xyz: the input files are 1024.0 MiB "
                                         r"together, more than MAX_INPUT_BYTES=268435456"):
        read(str(huge))


def test_the_byte_limit_counts_all_files_together(tmp_path: Path) -> None:
    a = write(tmp_path / "a.xyz", WATER_EXPERIMENTAL)
    b = write(tmp_path / "b.xyz", WATER_EXPERIMENTAL)
    size = len(WATER_EXPERIMENTAL)
    assert len(good(read(a, b, limits=Limits(max_input_bytes=2 * size)))) == 2
    with pytest.raises(InputError, match="MAX_INPUT_BYTES"):
        read(a, b, limits=Limits(max_input_bytes=2 * size - 1))


def test_stdin_is_counted_as_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin_of(monkeypatch, WATER_EXPERIMENTAL.encode() * 10_000)  # no size to stat
    with pytest.raises(InputError, match=r"^stdin: the input is larger than "
                                         r"MAX_INPUT_BYTES=100000 \(100000 bytes\)"):
        read("-", limits=Limits(max_input_bytes=100_000))


def test_a_line_without_end_is_refused_not_held(tmp_path: Path) -> None:
    path = tmp_path / "one.smi"
    path.write_bytes(b"C" * (3 * 1024 * 1024))
    with pytest.raises(InputError, match=r"one.smi:1: a line longer than 1.0 MiB"):
        read(str(path))


def test_molecules_over_the_atom_limit_are_refused_without_reading_them(
        tmp_path: Path) -> None:
    big = "1000000000\nclaims a billion atoms\nO 0 0 0\n"
    path = write(tmp_path / "big.xyz", WATER_EXPERIMENTAL + big)
    items = read(path)
    assert isinstance(items[0], ReadMolecule)
    assert str(items[1]).endswith("molecule 2: 1000000000 atoms, more than MAX_ATOMS=10000")
    tiny = Limits(max_atoms=4)
    [smi] = read(write(tmp_path / "b.smi", "CCCC butane\n"), limits=tiny)
    assert str(smi).endswith("has 14 atoms with hydrogens, more than MAX_ATOMS=4")
    acetate, methyl, ammonium = read(str(FIXTURES / "library.sdf"), limits=tiny)
    assert str(acetate) == f"{FIXTURES}/library.sdf:1: molecule 1: 7 atoms, more than MAX_ATOMS=4"
    assert isinstance(methyl, ReadMolecule) and methyl.name == "methyl_radical"
    assert str(ammonium).endswith("molecule 3: 5 atoms, more than MAX_ATOMS=4")
    [js] = read(write(tmp_path / "w.json", json.dumps(
        qcschema(["H"] * 6, [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5]))),
        limits=tiny)
    assert str(js).endswith("6 atoms, more than MAX_ATOMS=4")
