"""`qforge submit --conformers N`: ensembles from SMILES and SDF with the real RDKit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qforge.cli.main import main
from qforge.inputs import BadRecord, Limits, ReadMolecule, expand_sources, read_sources
from qforge.inputs.chem import read_smiles_ensemble
from qforge.inputs.conformers import ConformerOptions, conformer_name, molecule_key
from qforge.record import JobRecord
from qforge.service.ensemble import rmsd
from qforge.service.permolecule import heavy_atoms
from qforge.service.wire import decode_molecule, encode_molecule
from qforge_runner.errors import InputError

LIBRARY = "CCCC butane\nOCCO ethanediol\nc1ccccc1 benzene\nO water\n"


def _records(jobs: Path) -> list[JobRecord]:
    return sorted((JobRecord.model_validate_json((d / "metadata.json").read_text())
                   for d in jobs.iterdir() if not d.name.startswith(".")),
                  key=lambda r: r.created_ns)


def _read(path: Path, options: ConformerOptions | None) -> list[ReadMolecule]:
    items = list(read_sources(expand_sources([str(path)]), Limits(), options))
    assert not [i for i in items if isinstance(i, BadRecord)]
    return [i for i in items if isinstance(i, ReadMolecule)]


def test_an_ensemble_is_pruned_by_heavy_atom_rmsd_and_the_same_every_time() -> None:
    ens = read_smiles_ensemble("CCCCO", max_atoms=100, conformers=ConformerOptions(8))
    again = read_smiles_ensemble("CCCCO", max_atoms=100, conformers=ConformerOptions(8))
    assert 2 <= len(ens.molecules) <= 8
    assert [m.geometry for m in ens.molecules] == [m.geometry for m in again.molecules]
    other = read_smiles_ensemble("OCCCC", max_atoms=100, conformers=ConformerOptions(8))
    assert ens.smiles == other.smiles == "CCCCO"  # the key's SMILES is canonical
    heavy = [heavy_atoms(m.symbols, m.geometry) for m in ens.molecules]
    for i in range(len(heavy)):
        assert all(m.symbols == ens.molecules[0].symbols for m in ens.molecules)
        for j in range(i):
            assert rmsd(heavy[i], heavy[j]) >= 0.5
    looser = read_smiles_ensemble("CCCCO", max_atoms=100,
                                  conformers=ConformerOptions(8, rmsd=0.05))
    assert len(looser.molecules) >= len(ens.molecules)


def test_rigid_molecules_give_fewer_conformers_than_asked() -> None:
    for smiles in ("c1ccccc1", "O", "C#C"):
        ens = read_smiles_ensemble(smiles, max_atoms=50, conformers=ConformerOptions(8))
        assert len(ens.molecules) == 1, smiles


def test_conformers_are_named_and_keyed_per_molecule(tmp_path: Path) -> None:
    lib = tmp_path / "lib.smi"
    lib.write_text(LIBRARY)
    items = _read(lib, ConformerOptions(8))
    names = [i.name for i in items]
    assert len(set(names)) == len(names)
    assert names[:2] == ["butane.c01", "butane.c02"] and "water.c01" in names
    assert conformer_name("x" * 70, 3, 120) == "x" * 58 + ".c003"
    assert {i.conformer for i in items if i.name.startswith("water")} == {(1, 8)}
    single = _read(lib, None)
    assert [i.name for i in single] == ["butane", "ethanediol", "benzene", "water"]
    assert all(i.conformer is None and i.smiles for i in single)


def test_the_molecule_key_is_the_canonical_species() -> None:
    assert molecule_key("CCO", 0, 0) == molecule_key("CCO", 0, 0)
    assert molecule_key("CCO", 0, 0) != molecule_key("CCO", 1, 0)
    assert molecule_key("CCO", 0, 0) != molecule_key("CCO", 0, 2)
    assert molecule_key(None, 0, 0, b"O 1 2 3") != molecule_key(None, 0, 0, b"O 1 2 4")
    assert len(molecule_key("CCO", 0, 0)) == 21


def test_sdf_records_give_ensembles_too_and_xyz_is_refused(tmp_path: Path) -> None:
    from rdkit import Chem

    sdf = tmp_path / "two.sdf"
    writer = Chem.SDWriter(str(sdf))
    for smiles, title in (("CCCC", "butane"), ("c1ccccc1", "benzene")):
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", title)
        writer.write(mol)  # 2D records
    writer.close()
    items = _read(sdf, ConformerOptions(6))
    assert [i.name for i in items][:1] == ["butane.c01"] and items[-1].name == "benzene.c01"
    assert len({i.smiles for i in items}) == 2
    xyz = tmp_path / "w.xyz"
    xyz.write_text("3\nwater\nO 0 0 0\nH 0 0 0.96\nH 0.93 0 -0.24\n")
    with pytest.raises(InputError, match="--conformers needs SMILES or SDF/MOL input"):
        _read(xyz, ConformerOptions(4))


def test_the_wire_carries_the_smiles_and_the_conformer(tmp_path: Path) -> None:
    lib = tmp_path / "lib.smi"
    lib.write_text("CCCC butane\n")
    item = _read(lib, ConformerOptions(4))[1]
    back = decode_molecule(encode_molecule(item).encode(), 2, 1000)
    assert isinstance(back, ReadMolecule)
    assert (back.name, back.smiles, back.conformer) == ("butane.c02", "CCCC", (2, 4))
    bad = json.loads(encode_molecule(item))
    bad["conformer"] = [0, 4]
    assert isinstance(decode_molecule(json.dumps(bad).encode(), 2, 1000), BadRecord)


def test_submit_reports_molecules_and_conformer_jobs_and_keys_every_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib.smi"
    lib.write_text(LIBRARY)
    jobs = tmp_path / "jobs"
    code = main(["--jobs-dir", str(jobs), "submit", str(lib), "--conformers", "8",
                 "--group", "ens"])
    out = capsys.readouterr().out
    records = _records(jobs)
    assert code == 0
    assert out.startswith(f"Submitted {len(records)} conformer jobs of 4 molecules to group "
                          f"ens: {len(records)} new jobs")
    by_key: dict[str | None, list[str]] = {}
    for rec in records:
        by_key.setdefault(rec.molecule, []).append(rec.spec.name or "")
    assert len(by_key) == 4 and None not in by_key
    assert len(by_key[molecule_key("CCCC", 0, 0)]) >= 2  # butane: anti and gauche
    # without --conformers every new record carries its molecule's key as well
    water = tmp_path / "water.xyz"
    water.write_text("3\nwater\nO 0 0 0\nH 0 0 0.96\nH 0.93 0 -0.24\n")
    assert main(["--jobs-dir", str(jobs), "submit", str(water), "--group", "plain"]) == 0
    assert "Submitted job" in capsys.readouterr().out
    plain = [r for r in _records(jobs) if r.group == "plain"]
    assert len(plain) == 1 and plain[0].molecule is not None
    assert main(["--jobs-dir", str(jobs), "submit", str(water), "--conformer-rmsd", "1"]) == 2
    assert "--conformer-rmsd needs --conformers N" in capsys.readouterr().err


def test_name_with_conformers_keeps_the_conformer_suffix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib.smi"
    lib.write_text("CCCC\nCCO\n")
    jobs = tmp_path / "jobs"
    assert main(["--jobs-dir", str(jobs), "submit", str(lib), "--conformers", "3",
                 "--name", "screen"]) == 0
    names = sorted(r.spec.name or "" for r in _records(jobs))
    assert names[0] == "screen_1.c1" or names[0].startswith("screen_1.c0")
    assert any(n.startswith("screen_2.c") for n in names)
