"""Whatever a file holds, a reader yields molecules and bad records, or raises the one
InputError that stops a submission: never another exception (a traceback for the user)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qforge.inputs import BadRecord, Format, Limits, ReadMolecule, expand_sources, read_sources
from qforge_runner.errors import InputError
from tests.molecules import WATER_EXPERIMENTAL

FIXTURE_SDF = (Path(__file__).parent / "fixtures" / "library.sdf").read_text()
SEEDS = {
    Format.xyz: WATER_EXPERIMENTAL * 2,
    Format.sdf: FIXTURE_SDF,
    Format.smi: "CCO ethanol\n[NH4+] ammonium\n",
    Format.json: '[{"symbols": ["H", "H"], "geometry": [0, 0, 0, 0, 0, 1.4]}]',
}


def mutate(text: str, cuts: list[tuple[int, str]]) -> str:
    """`text` with pieces replaced at the given positions (a broken but near-valid file)."""
    chars = list(text)
    for pos, piece in cuts:
        at = pos % (len(chars) + 1)
        chars[at:at + len(piece)] = piece
    return "".join(chars)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(list(Format)),
       cuts=st.lists(st.tuples(st.integers(0, 2000), st.text(max_size=8)), max_size=6))
def test_readers_never_raise_anything_but_input_error(tmp_path: Path, fmt: Format,
                                                      cuts: list[tuple[int, str]]) -> None:
    path = tmp_path / f"fuzz.{fmt.value}"
    path.write_text(mutate(SEEDS[fmt], cuts), encoding="utf-8")
    try:
        items = list(read_sources(expand_sources([str(path)]), Limits(max_atoms=50)))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for item in items:
        assert isinstance(item, ReadMolecule | BadRecord)
        if isinstance(item, BadRecord):
            assert str(item).startswith(str(path)) and "\n" not in str(item)
