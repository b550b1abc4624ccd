"""Fuzzing `qforge submit` (issue 12, point 3, first half) with Hypothesis, through the
real CLI entry point (`qforge.cli.main.main`, in-process: the same code as the
console script, without an interpreter start per example).

For every input: random bytes, mutated XYZ, QCSchema JSON, SMILES and SDF, extreme and
non-finite numbers, odd Unicode, random option values and combinations:
- a rejection is exit 2, exactly one line on stderr, no traceback, nothing written;
- an acceptance wrote one complete job that the runner reads back (`load_job`, the
  input.xyz it will hand to xtb, xtb's argument list) and that the Kubernetes executor
  can turn into a Job manifest.

Budget: the "ci" profile (tests/conftest.py: 200 examples a test, derandomized) under
`make test`; `make fuzz` runs 10,000 a test (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qforge.cli.main import main
from qforge.k8s.manifests import build_job_manifest
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.cli import load_job
from qforge_runner.molecule import parse_xyz
from tests.molecules import ACETONE, CAFFEINE, WATER_EXPERIMENTAL

SEEDS_XYZ = [WATER_EXPERIMENTAL, ACETONE, CAFFEINE]
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                   max_size=12)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "1e309", "-0", "0x10", "1_000",
                     "١٢", "1e-400", "+", ".", "", "9" * 400]),
    st.integers(-(10**30), 10**30),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="qforge-fuzz-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _submit(scratch: Path, content: bytes, options: list[str],
            capsys: pytest.CaptureFixture[str], suffix: str = ".in") -> None:
    """Run `qforge submit FILE OPTIONS` and check the contract either way."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    try:
        jobs = work / "jobs"
        molecule = work / f"molecule{suffix}"
        molecule.write_bytes(content)
        capsys.readouterr()
        try:
            code = main(["--jobs-dir", str(jobs), "submit", str(molecule), *options])
        except SystemExit as stop:  # argparse's way out, as the console script ends
            code = stop.code if isinstance(stop.code, int) else 2
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "Traceback" not in out
        if code != 0:
            assert code == 2, (code, err)
            # one line per problem (a file of several molecules may have several), each
            # a `qforge:` line, the verdict last
            lines = err.splitlines()
            assert lines and all(line.startswith("qforge: ") for line in lines), err
            assert lines[-1].startswith("qforge: error: "), err
            assert len(lines) == 1 or "molecule" in err, err
            written = [p for p in jobs.rglob("*") if p.is_file()] if jobs.exists() else []
            assert written == [], written
            return
        store = JobStore(jobs)
        ids = store.job_ids()
        assert ids and sorted(k.job_id for k in store.queue.queued()) == ids
        for job_id in ids:
            _runner_reads(store, job_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _runner_reads(store: JobStore, job_id: str) -> None:
    # what the runner reads
    loaded_id, spec = load_job(store.layout.job_dir(job_id))
    assert loaded_id == job_id
    given_xyz = parse_xyz((store.layout.job_dir(job_id) / "input.xyz").read_text())
    assert given_xyz.symbols == spec.molecule.symbols
    for a, b in zip(given_xyz.geometry, spec.molecule.geometry, strict=True):
        assert all(math.isfinite(x) and abs(x - y) <= 1e-9 * max(1.0, abs(y))
                   for x, y in zip(a, b, strict=True))
    assert all(isinstance(arg, str) and arg for arg in spec.xtb_args())
    # and what the controller makes of it
    build_job_manifest(job_id, spec, Settings())


@given(st.binary(max_size=400))
def test_random_bytes(scratch: Path, capsys: pytest.CaptureFixture[str],
                      content: bytes) -> None:
    _submit(scratch, content, [], capsys)


@st.composite
def mutated_xyz(draw: st.DrawFn) -> bytes:
    lines = draw(st.sampled_from(SEEDS_XYZ)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        tokens = lines[i].split() or [""]
        j = draw(st.integers(0, len(tokens) - 1))
        how = draw(st.sampled_from(["number", "text", "drop_line", "dup_line", "drop_token",
                                    "count", "unicode_ws"]))
        if how == "number":
            tokens[j] = str(draw(NUMBERS))
        elif how == "text":
            tokens[j] = draw(ODD_TEXT)
        elif how == "drop_line" and len(lines) > 1:
            del lines[i]
            continue
        elif how == "dup_line":
            lines.insert(i, lines[i])
            continue
        elif how == "drop_token":
            del tokens[j]
        elif how == "count":
            lines[0] = str(draw(st.integers(-5, 10**7)))
            continue
        else:
            tokens[j] += draw(st.sampled_from(["\u00a0", "\u2028", "\t", "\r", "\x00",
                                               "\u200b", "\ufeff"]))
        lines[i] = " ".join(tokens)
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n\n"]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])),
                       errors="replace")


@given(mutated_xyz())
# found by `make fuzz`: a coordinate of 1e308 overflowed the clash grid (exit 4)
@example(b"3\nwater\nO 1e308 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
# found by `make fuzz`: "²" passes str.isdigit() but not int() (exit 4)
@example(b"\xc2\xb2\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n")
def test_mutated_xyz(scratch: Path, capsys: pytest.CaptureFixture[str],
                     content: bytes) -> None:
    _submit(scratch, content, [], capsys, ".xyz")


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
              st.integers(-(10**20), 10**20), ODD_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=8)


@st.composite
def mutated_qcschema(draw: st.DrawFn) -> bytes:
    mol: dict[str, Any] = {
        "schema_name": "qcschema_molecule", "schema_version": 2,
        "symbols": ["O", "H", "H"],
        "geometry": [0.0, 0.0, 0.2217, 0.0, 1.4309, -0.8867, 0.0, -1.4309, -0.8867],
        "molecular_charge": 0, "molecular_multiplicity": 1,
    }
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*mol, "extras", "fix_com", ODD_TEXT]))
        if not isinstance(key, str):
            key = draw(key)
        how = draw(st.sampled_from(["value", "delete", "geometry_item", "symbol_item"]))
        if how == "delete":
            mol.pop(key, None)
        elif how == "geometry_item" and isinstance(mol.get("geometry"), list) \
                and mol["geometry"]:
            i = draw(st.integers(0, len(mol["geometry"]) - 1))
            mol["geometry"][i] = draw(st.one_of(NUMBERS, JSON_VALUES))
        elif how == "symbol_item" and isinstance(mol.get("symbols"), list) and mol["symbols"]:
            i = draw(st.integers(0, len(mol["symbols"]) - 1))
            mol["symbols"][i] = draw(st.one_of(ODD_TEXT, JSON_VALUES))
        else:
            mol[key] = draw(JSON_VALUES)
    return json.dumps(mol, allow_nan=True).encode()


@given(mutated_qcschema())
def test_mutated_qcschema_json(scratch: Path, capsys: pytest.CaptureFixture[str],
                               content: bytes) -> None:
    _submit(scratch, content, [], capsys, ".json")


OPTION_VALUES = {
    "--method": st.sampled_from(["gfn2", "gfn1", "gfn0", "gfnff", "GFN2", "gfn3", ""]),
    "--task": st.sampled_from(["opt", "sp", "hess", "ohess", "md", ""]),
    "--opt-level": st.sampled_from(["crude", "normal", "vtight", "extreme", "ultra"]),
    "--charge": st.one_of(st.integers(-30, 30).map(str), NUMBERS.map(str)),
    "--uhf": st.one_of(st.integers(-3, 30).map(str), NUMBERS.map(str)),
    "--solvent": st.one_of(st.sampled_from(["water", "h2o", "ch2cl2", "dmso", "vacuum"]),
                           ODD_TEXT),
    "--timeout": NUMBERS.map(str),
    "--cpu": st.one_of(st.integers(-2, 10**6).map(str), NUMBERS.map(str)),
    "--memory": st.one_of(st.sampled_from(["1Gi", "512Mi", "0", "1e3", "-1Gi", "1Zi"]),
                          ODD_TEXT),
    "--priority": st.one_of(st.integers(-2000, 2000).map(str), NUMBERS.map(str)),
    "--name": st.one_of(st.from_regex(r"[a-z][a-z0-9_-]{0,70}", fullmatch=True), ODD_TEXT,
                        st.sampled_from(["../etc", "a/b", "x\ny", "$(id)", "{{.}}"])),
    "--label": st.one_of(
        st.tuples(st.from_regex(r"[a-z][a-z0-9./-]{0,70}", fullmatch=True),
                  st.from_regex(r"[A-Za-z0-9._-]{0,70}", fullmatch=True)
                  ).map(lambda kv: f"{kv[0]}={kv[1]}"),
        ODD_TEXT,
        st.sampled_from(["app.kubernetes.io/name=evil", "qforge.io/job-id=x", "a=b,c=d",
                         "a=b\nc: d", "k=v in (x)", "=v", "k="])),
}


@given(st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=6).flatmap(
    lambda names: st.tuples(*[OPTION_VALUES[n].map(lambda v, n=n: [n, v]) for n in names])),
    st.sampled_from([*SEEDS_XYZ, '{"symbols": ["N", "H", "H", "H"], "geometry": '
                     '[0, 0, 0.2, 1.8, 0, -0.5, -0.9, 1.6, -0.5, -0.9, -1.6, -0.5]}']),
    st.booleans())
def test_option_combinations(scratch: Path, capsys: pytest.CaptureFixture[str],
                             pairs: tuple[list[str], ...], molecule: str, as_json: bool
                             ) -> None:
    options = [part for pair in pairs for part in pair] + (["--json"] if as_json else [])
    _submit(scratch, molecule.encode(), options, capsys,
            ".json" if molecule.startswith("{") else ".xyz")


# --- SDF and SMILES (controller/inputs, RDKit) -------------------------------------

SMILES_SEEDS = ["CCO", "c1ccccc1", "O", "CC(=O)C", "[NH4+]", "C[C@H](N)C(=O)O", "CCO ethanol"]
SMILES_PIECES = st.one_of(
    st.sampled_from(list("()[]=#@+-%0123456789cCnNoOsSpPFClBrI./\\:*~ \t")), ODD_TEXT)


@st.composite
def mutated_smiles(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        text = list(draw(st.sampled_from(SMILES_SEEDS)))
        for _ in range(draw(st.integers(0, 4))):
            i = draw(st.integers(0, len(text)))
            if draw(st.booleans()) and i < len(text):
                del text[i]
            else:
                text.insert(i, draw(SMILES_PIECES))
        lines.append("".join(text))
    return ("\n".join(lines) + "\n").encode("utf-8", errors="replace")


@given(mutated_smiles())
def test_mutated_smiles(scratch: Path, capsys: pytest.CaptureFixture[str],
                        content: bytes) -> None:
    _submit(scratch, content, [], capsys, ".smi")


METHANOL_SDF = """methanol
     RDKit          3D

  6  5  0  0  0  0  0  0  0  0999 V2000
   -0.3653    0.0201   -0.0197 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.0120    0.1968    0.0929 O   0  0  0  0  0  0  0  0  0  0  0  0
   -0.7250   -0.4719    0.8867 H   0  0  0  0  0  0  0  0  0  0  0  0
   -0.8536    0.9993   -0.1011 H   0  0  0  0  0  0  0  0  0  0  0  0
   -0.5888   -0.5865   -0.9100 H   0  0  0  0  0  0  0  0  0  0  0  0
    1.5207   -0.1578    0.0512 H   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
  1  5  1  0
  2  6  1  0
M  END
$$$$
"""


@st.composite
def mutated_sdf(draw: st.DrawFn) -> bytes:
    lines = METHANOL_SDF.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["number", "text", "drop", "dup", "counts"]))
        tokens = lines[i].split() or [""]
        j = draw(st.integers(0, len(tokens) - 1))
        if how == "number":
            tokens[j] = str(draw(NUMBERS))
            lines[i] = "   ".join(tokens)
        elif how == "text":
            tokens[j] = draw(ODD_TEXT)
            lines[i] = "   ".join(tokens)
        elif how == "drop" and len(lines) > 1:
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        else:
            lines[3] = f"{draw(st.integers(-3, 10**6)):3d}{lines[3][3:]}"
    return ("\n".join(lines) + "\n").encode("utf-8", errors="replace")


@given(mutated_sdf())
# found by `make fuzz`: a title of "\x1e" (a line break to str.splitlines) was written
# into input.xyz's comment line, which the runner then could not read
@example(b"\x1e\n" + METHANOL_SDF.split("\n", 1)[1].encode())
def test_mutated_sdf(scratch: Path, capsys: pytest.CaptureFixture[str],
                     content: bytes) -> None:
    _submit(scratch, content, [], capsys, ".sdf")
