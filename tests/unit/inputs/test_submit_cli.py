"""`qforge submit` with many molecules: all-or-nothing, --skip-invalid, --json, limits."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from qforge.cli.main import main
from qforge.inputs import Limits, ReadMolecule, expand_sources, read_sources
from qforge.record import JobRecord
from qforge.service.submission import FirstPass, check_options, rebuild
from qforge.settings import Settings
from qforge_runner.spec import JobSpec
from tests.molecules import METHANE, WATER_EXPERIMENTAL

FIXTURES = Path(__file__).parent / "fixtures"


class Run:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.jobs = tmp_path / "jobs"
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(["--jobs-dir", str(self.jobs), "submit", *args])
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def records(self) -> list[JobRecord]:
        if not self.jobs.exists():
            return []
        return sorted((JobRecord.model_validate_json((d / "metadata.json").read_text())
                       for d in self.jobs.iterdir() if not d.name.startswith(".")),
                      key=lambda r: r.created_ns)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    for key in ("JOBS_DIR", "MAX_INPUT_BYTES", "MAX_ATOMS"):
        monkeypatch.delenv(key, raising=False)
    return Run(tmp_path, capsys)


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_settings_default_input_limits() -> None:
    s = Settings.from_env({})
    assert (s.max_input_bytes, s.max_atoms) == (256 * 1024**2, 10_000)
    s = Settings.from_env({"MAX_INPUT_BYTES": "1000", "MAX_ATOMS": "50"})
    assert (s.max_input_bytes, s.max_atoms) == (1000, 50)


def test_files_of_every_format_in_one_call_print_one_json_line_each(
        run: Run, tmp_path: Path) -> None:
    smi = tmp_path / "lib.smi"
    smi.write_text("CC(=O)[O-] acetate\n[CH3] methyl\n")
    xyz = tmp_path / "confs.xyz"
    xyz.write_text(WATER_EXPERIMENTAL + METHANE)
    code, out, err = run(str(smi), str(xyz), str(FIXTURES / "library.sdf"),
                         "--task", "sp", "--group", "screen-1", "--json")
    assert (code, err) == (0, "")
    printed = lines(out)
    records = run.records()
    assert [p["name"] for p in printed] == [
        "acetate", "methyl", "confs_1", "confs_2", "acetate_anion", "methyl_radical",
        "ammonium"]
    assert [p["job_id"] for p in printed] == [r.job_id for r in records]
    assert {p["status"] for p in printed} == {"QUEUED"}
    assert [p["duplicate_of"] for p in printed] == [None] * 7
    assert [(r.spec.charge, r.spec.uhf) for r in records] == [
        (-1, 0), (0, 1), (0, 0), (0, 0), (-1, 0), (0, 1), (1, 0)]
    assert {(r.group, r.spec.task.value) for r in records} == {("screen-1", "sp")}
    xyz_in = (run.jobs / records[2].job_id / "input.xyz").read_text()
    assert xyz_in.splitlines()[0] == "3"


def test_the_same_molecules_again_are_duplicates(run: Run, tmp_path: Path) -> None:
    smi = tmp_path / "lib.smi"
    smi.write_text("CCO ethanol\nC methane\n")
    first = lines(run(str(smi), "--json")[1])
    code, out, _ = run(str(smi), "--json", "--group", "again")
    assert code == 0
    assert [p["duplicate_of"] for p in lines(out)] == [p["job_id"] for p in first]
    assert len(run.records()) == 2
    forced = lines(run(str(smi), "--json", "--force")[1])
    assert [p["duplicate_of"] for p in forced] == [None, None] and len(run.records()) == 4


def test_one_bad_record_means_nothing_is_written_and_exit_2(run: Run, tmp_path: Path) -> None:
    smi = tmp_path / "library.smi"
    smi.write_text("CCO\nC1CC ring\nCC\nC1=C2CCC1CC2 bredt\n")
    code, out, err = run(str(smi), str(FIXTURES / "library.sdf"))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"qforge: {smi}:2: molecule 2: cannot parse SMILES 'C1CC': unclosed ring",
        f"qforge: {smi}:4: molecule 4: RDKit could not embed SMILES 'C1=C2CCC1CC2' in 3D "
        "(ETKDGv3, seed 20261201): no 3D structure satisfies its distance bounds",
        "qforge: error: 2 of 7 molecules are invalid; nothing was submitted "
        "(--skip-invalid submits the others)",
    ]
    assert run.records() == []


def test_a_spec_error_is_a_bad_record_too(run: Run, tmp_path: Path) -> None:
    xyz = tmp_path / "w.xyz"
    xyz.write_text(WATER_EXPERIMENTAL + METHANE)
    code, _, err = run(str(xyz), "--uhf", "1")
    assert code == 2 and run.records() == []
    assert err.splitlines()[0] == (
        f"qforge: {xyz}:1: molecule 1: charge 0 with uhf 1 leaves 10 electrons for H2O: "
        "an even count needs uhf=0 (or another charge)")


def test_skip_invalid_submits_the_valid_ones_and_lists_the_bad(run: Run,
                                                               tmp_path: Path) -> None:
    smi = tmp_path / "library.smi"
    smi.write_text("CCO\nC1CC ring\nCC\n")
    code, out, err = run(str(smi), "--skip-invalid")
    assert code == 0
    assert err == f"qforge: skipped {smi}:2: molecule 2: cannot parse SMILES 'C1CC': " \
                  "unclosed ring\n"
    assert [r.spec.name for r in run.records()] == ["library_1", "library_3"]
    assert out.startswith("Submitted 2 molecules to group library-")
    assert "2 new jobs, 0 already in the store, 1 invalid skipped" in out


def test_skip_invalid_with_nothing_valid_exits_2(run: Run, tmp_path: Path) -> None:
    smi = tmp_path / "bad.smi"
    smi.write_text("C1CC\n")
    code, _, err = run(str(smi), "--skip-invalid")
    assert code == 2 and run.records() == []
    assert err == f"qforge: error: {smi}:1: molecule 1: cannot parse SMILES 'C1CC': " \
                  "unclosed ring\n"  # one molecule, one line
    smi.write_text("C1CC\nC(C\n")
    code, _, err = run(str(smi), "--skip-invalid")
    assert code == 2 and run.records() == []
    assert err.splitlines()[-1] == "qforge: error: no valid molecule; nothing was submitted"


def test_a_bad_option_is_one_line_not_one_per_molecule(run: Run, tmp_path: Path) -> None:
    xyz = tmp_path / "w.xyz"
    xyz.write_text(WATER_EXPERIMENTAL * 5)
    code, _, err = run(str(xyz), "--solvent", "watr")
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown solvent 'watr': did you mean 'water'?" in err
    code, _, err = run(str(xyz), "--group", "bad/group")
    assert code == 2 and "group 'bad/group' is not valid" in err
    assert run.records() == []


def test_name_names_one_molecule_or_stems_a_batch(run: Run, tmp_path: Path) -> None:
    one = tmp_path / "one.xyz"
    one.write_text(WATER_EXPERIMENTAL)
    many = tmp_path / "many.xyz"
    many.write_text(METHANE * 3)
    assert run(str(one), "--name", "probe")[0] == 0
    assert run(str(many), "--name", "ch4", "--force")[0] == 0
    assert [r.spec.name for r in run.records()] == ["probe", "ch4_1", "ch4_2", "ch4_3"]


def test_a_folder_and_stdin(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "structures"
    folder.mkdir()
    (folder / "water.xyz").write_text(WATER_EXPERIMENTAL)
    (folder / "methane.xyz").write_text(METHANE)
    code, out, _ = run(str(folder), "--json")
    assert code == 0 and [p["name"] for p in lines(out)] == ["methane", "water"]
    assert all((r.group or "").startswith("structures-20") for r in run.records())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"CCO ethanol\nCC\n")))
    code, out, _ = run("-", "--json", "--format", "smi")
    assert code == 0 and [p["name"] for p in lines(out)] == ["ethanol", "stdin_2"]


def test_one_molecule_keeps_the_one_line_summary(run: Run, tmp_path: Path) -> None:
    one = tmp_path / "water.xyz"
    one.write_text(WATER_EXPERIMENTAL)
    code, out, _ = run(str(one))
    job_id = run.records()[0].job_id
    assert (code, out) == (0, f"Submitted job {job_id} (H2O, gfn2 opt): QUEUED\n")
    code, out, _ = run(str(one))
    assert out == (f"Job {job_id} (H2O, gfn2 opt) is already in the store: QUEUED "
                   "(--force runs it again)\n")


def test_limits_from_the_environment(run: Run, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    xyz = tmp_path / "w.xyz"
    xyz.write_text(WATER_EXPERIMENTAL * 3)
    monkeypatch.setenv("MAX_INPUT_BYTES", "100")
    code, _, err = run(str(xyz))
    assert code == 2 and f"{xyz}: the input files are" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("MAX_INPUT_BYTES", "1000000")
    monkeypatch.setenv("MAX_ATOMS", "2")
    code, _, err = run(str(xyz))
    assert code == 2 and "3 atoms, more than MAX_ATOMS=2" in err
    assert run.records() == []


def test_usage_errors(run: Run, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run("--format", "pdb", str(tmp_path))
    assert exc.value.code == 2
    code, _, err = run("-", "-")
    assert code == 2 and "named twice" in err


def test_the_second_pass_rebuilds_exactly_the_validated_specs(tmp_path: Path) -> None:
    smi = tmp_path / "lib.smi"
    smi.write_text("CC(=O)[O-] acetate\n[CH3] methyl\nc1ccccc1 benzene\n")
    options = {"task": "sp", "solvent": "Water", "memory": "1Gi", "labels": {"team": "a"}}
    validated = check_options(options, None)
    items = list(read_sources(expand_sources([str(smi)]), Limits()))
    first = FirstPass(options, charge=None, uhf=None, name=None)
    for item in items:
        first.add(item)
    pending, bad = first.finish(), first.bad
    assert bad == []
    rebuilt = rebuild(pending, validated)
    for item, (spec, xyz, topology, _key) in zip(items, rebuilt, strict=True):
        assert isinstance(item, ReadMolecule)
        assert item.topology is not None and topology == item.topology.to_json()
        full = JobSpec(molecule=item.molecule, name=item.name, charge=item.charge,
                       uhf=item.uhf, **options)
        assert spec.model_dump(mode="json") == full.model_dump(mode="json")
        assert spec.solvent == "water" and spec.task.value == "sp"
        assert xyz == full.molecule.to_xyz()
