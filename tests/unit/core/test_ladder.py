"""The retry ladder's decision (qforge.scheduling.ladder), as a table: how a run ended
and the rungs used before in, the next rung (or none) out."""

from __future__ import annotations

from typing import Any

import pytest

from qforge.scheduling.ladder import ETEMP, next_rung
from qforge_runner.failures import SCC_NOT_CONVERGED
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import ErrorType, JobError
from qforge_runner.spec import JobSpec
from tests.molecules import AMMONIA

MOL = parse_xyz(AMMONIA)
DISPLACED = MOL.model_copy(update={"geometry": tuple(
    (x, y, z + 0.1) for x, y, z in MOL.geometry)})
SCC = JobError(type=ErrorType.convergence_error, message=f"{SCC_NOT_CONVERGED}: check ...")
GEOMETRY = JobError(type=ErrorType.convergence_error,
                    message="the geometry optimisation did not converge in 200 cycles")
TIMEOUT = JobError(type=ErrorType.timeout, message="xtb did not finish within 10 s")
XTB = JobError(type=ErrorType.xtb_error, message="xtb crashed (SIGSEGV)")
INPUT = JobError(type=ErrorType.input_error, message="xtb rejected the input")
OOM = JobError(type=ErrorType.resource_error, message="out of memory?")
CANCELLED = JobError(type=ErrorType.cancelled, message="cancelled by user")

# (spec changes, error, rungs used, saddle geometry?) -> (rung, the spec's changes)
TABLE: list[tuple[dict[str, Any], JobError | None, set[str], bool,
                  tuple[str, dict[str, Any]] | None]] = [
    ({}, SCC, set(), False, ("etemp", {"etemp": ETEMP})),
    ({}, SCC, {"etemp"}, False, ("preopt", {"preopt_gfnff": True})),
    ({}, SCC, {"etemp", "preopt"}, False, None),
    ({"etemp": 5000.0}, SCC, set(), False, ("preopt", {"preopt_gfnff": True})),
    ({"method": "gfnff"}, SCC, set(), False, None),
    ({}, GEOMETRY, set(), False, None),
    ({}, TIMEOUT, set(), False, ("longer", {"timeout": 20.0})),
    ({}, TIMEOUT, {"etemp"}, False, ("longer", {"timeout": 20.0})),
    ({}, TIMEOUT, {"longer"}, False, None),
    ({"task": "ohess"}, None, set(), True, ("displace", {"start_geometry": DISPLACED})),
    ({"task": "ohess"}, None, {"displace"}, True, None),
    ({"task": "ohess"}, None, set(), False, None),  # a minimum: nothing to do
    ({"task": "opt"}, None, set(), True, None),  # no Hessian, no saddle to tell
    ({}, XTB, set(), False, None),
    ({}, INPUT, set(), False, None),
    ({}, OOM, set(), False, None),
    ({}, CANCELLED, set(), False, None),
]


@pytest.mark.parametrize(("changes", "error", "used", "saddle", "expected"), TABLE)
def test_the_next_rung(changes: dict[str, Any], error: JobError | None, used: set[str],
                       saddle: bool, expected: tuple[str, dict[str, Any]] | None) -> None:
    spec = JobSpec(molecule=MOL, **changes)
    rung = next_rung(spec=spec, error=error, used=used,
                     saddle=DISPLACED if saddle else None, timeout=10.0)
    if expected is None:
        assert rung is None
    else:
        assert rung is not None and (rung.name, rung.spec) == expected
        assert rung.change  # the words the history keeps


def test_each_rung_changes_what_xtb_is_asked() -> None:
    base = JobSpec(molecule=MOL)
    etemp = base.model_copy(update={"etemp": ETEMP})
    assert "--etemp" not in base.xtb_args()
    assert etemp.xtb_args()[etemp.xtb_args().index("--etemp") + 1] == "3000"
    longer = base.model_copy(update={"timeout": 20.0})
    assert longer.timeout == 20.0
    displaced = JobSpec(molecule=MOL, start_geometry=DISPLACED)
    assert displaced.start == DISPLACED and displaced.molecule == MOL
    with pytest.raises(ValueError, match="start_geometry"):
        JobSpec(molecule=MOL, start_geometry=parse_xyz("1\n\nH 0 0 0\n"))


def test_the_command_line_offers_every_error_type_a_job_fails_with() -> None:
    from qforge.cli.main import ERROR_TYPES

    offered = [t.value for t in ErrorType if t is not ErrorType.cancelled]
    assert offered == ERROR_TYPES
