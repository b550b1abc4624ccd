"""The job spec: defaults, validation messages, and xtb's command line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from qforge_runner.errors import InputError
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import ALPB_SOLVENTS, JobSpec, Method, OptLevel, Task
from tests.unit.runner.helpers import HYDROXYL, WATER, water, water_spec


def _message(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobSpec(**fields)
    return str(InputError.from_validation_error(info.value))


def test_defaults() -> None:
    spec = water_spec()
    assert (spec.method, spec.task, spec.opt_level) == (Method.gfn2, Task.opt, OptLevel.normal)
    assert (spec.charge, spec.uhf, spec.solvent, spec.timeout) == (0, 0, None, None)
    assert (spec.cpu, spec.memory, spec.priority, spec.name, spec.labels) == (
        None, None, 0, None, {})
    assert spec.threads == 1
    assert spec.electrons == 10


def test_enums_cover_xtb_choices() -> None:
    assert [m.value for m in Method] == ["gfn2", "gfn1", "gfn0", "gfnff"]
    assert [t.value for t in Task] == ["opt", "sp", "hess", "ohess"]
    assert [o.value for o in OptLevel] == [
        "crude", "sloppy", "loose", "lax", "normal", "tight", "vtight", "extreme"]


def test_alpb_solvents_are_xtb_65s_list() -> None:
    assert len(ALPB_SOLVENTS) == 24
    assert {"water", "ch2cl2", "woctanol", "hexandecane", "furane"} <= ALPB_SOLVENTS
    assert all(s == s.lower() for s in ALPB_SOLVENTS)


def test_solvent_is_case_insensitive() -> None:
    assert water_spec(solvent="Water").solvent == "water"
    assert water_spec(solvent=" DMSO ").solvent == "dmso"


def test_unknown_solvent_suggests_and_lists_valid_ones() -> None:
    msg = _message(molecule=water(), solvent="watr")
    assert msg.startswith("solvent: unknown solvent 'watr': did you mean 'water'?")
    assert "ALPB solvents include water, methanol" in msg
    assert "(24 in all" in msg


@pytest.mark.parametrize(
    ("xyz", "fields", "message"),
    [
        (HYDROXYL, {}, "charge 0 with uhf 0 leaves 9 electrons for HO: an odd count needs "
                       "uhf=1 (or another charge)"),
        (WATER, {"uhf": 1}, "charge 0 with uhf 1 leaves 10 electrons for H2O: an even count "
                            "needs uhf=0 (or another charge)"),
        (WATER, {"uhf": 3}, "an even count needs an even uhf such as uhf=2"),
        (WATER, {"charge": 11}, "charge 11 would remove more electrons than H2O has (10)"),
        (WATER, {"charge": 10}, "charge 10 leaves no electrons for H2O"),
        ("1\n\nH 0 0 0\n", {"uhf": 3}, "uhf 3 asks for more unpaired electrons than the 1"),
        (HYDROXYL, {"method": "gfnff"}, "leaves 9 electrons for HO"),
    ],
)
def test_charge_and_uhf_must_fit_the_electron_count(
    xyz: str, fields: dict[str, Any], message: str
) -> None:
    assert message in _message(molecule=parse_xyz(xyz), **fields)


def test_consistent_charge_and_uhf_are_accepted() -> None:
    hydroxyl = parse_xyz(HYDROXYL)
    assert JobSpec(molecule=hydroxyl, uhf=1).electrons == 9
    assert JobSpec(molecule=hydroxyl, charge=-1).electrons == 10
    assert JobSpec(molecule=hydroxyl, charge=1, uhf=2).uhf == 2  # triplet OH+
    assert JobSpec(molecule=hydroxyl, method=Method.gfnff, uhf=1).uhf == 1
    assert water_spec(uhf=2).uhf == 2  # triplet water: odd but allowed


def test_negative_uhf_is_rejected() -> None:
    assert "uhf: Input should be greater than or equal to 0" in _message(molecule=water(), uhf=-1)


def test_elements_beyond_a_methods_parameters_are_rejected() -> None:
    radon_and_beyond = parse_xyz("2\n\nRn 0 0 0\nFr 0 0 4\n")
    msg = _message(molecule=radon_and_beyond, uhf=1)
    assert "atom 2 (Fr): GFN2-xTB has no parameters for elements beyond Z=86" in msg
    assert JobSpec(molecule=radon_and_beyond, uhf=1, method="gfnff").method is Method.gfnff


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cpu": 0}, "cpu: Input should be greater than or equal to 1"),
        ({"cpu": 65}, "cpu: Input should be less than or equal to 64"),
        ({"priority": 1001}, "priority: Input should be less than or equal to 1000"),
        ({"timeout": 0}, "timeout: Input should be greater than 0"),
        ({"timeout": float("inf")}, "timeout: Input should be a finite number"),
        ({"method": "gfn3"}, "method: Input should be 'gfn2', 'gfn1', 'gfn0' or 'gfnff'"),
        ({"task": "md"}, "task: Input should be 'opt', 'sp', 'hess' or 'ohess'"),
        ({"opt_level": "verytight"}, "opt_level: Input should be"),
        ({"charge": 0.5}, "charge: Input should be a valid integer"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_field_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    assert message in _message(molecule=water(), **fields)


def test_name_labels_and_memory_are_plain_strings_with_length_limits() -> None:
    """Their Kubernetes syntax is qforge's (tests/unit/core/test_spec_syntax.py)."""
    spec = water_spec(name="has space", labels={"bad key": "-dash"}, memory="lots")
    assert (spec.name, spec.labels, spec.memory) == ("has space", {"bad key": "-dash"}, "lots")
    assert "name: String should have at most 63 characters" in _message(
        molecule=water(), name="a" * 64)
    assert "name: String should have at least 1 character" in _message(
        molecule=water(), name="")
    assert "String should have at most 63 characters" in _message(
        molecule=water(), labels={"team": "v" * 64})
    assert "String should have at most 317 characters" in _message(
        molecule=water(), labels={"k" * 318: "v"})


def test_molecule_may_be_given_as_text_or_qcschema() -> None:
    assert JobSpec(molecule=WATER).molecule == water()
    qc = {"schema_name": "qcschema_molecule", "symbols": ["O", "H", "H"],
          "geometry": water().geometry_bohr()}
    assert JobSpec(molecule=qc).molecule.formula == "H2O"
    msg = _message(molecule="2\n\nO 0 0 0\nXx 0 0 1\n")
    assert msg == "molecule: line 4: unknown element 'Xx'"


def test_spec_round_trips_through_json() -> None:
    spec = water_spec(method="gfn1", task="ohess", solvent="water", labels={"a": "b"},
                      memory="1Gi", timeout=60, name="w")
    again = JobSpec.model_validate(json.loads(spec.model_dump_json()))
    assert again == spec


def test_spec_is_frozen() -> None:
    with pytest.raises(ValidationError):
        water_spec().charge = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ["--gfn", "2", "--opt", "normal", "--chrg", "0", "--uhf", "0", "--json"]),
        ({"method": "gfn1", "task": "sp"},
         ["--gfn", "1", "--sp", "--chrg", "0", "--uhf", "0", "--json"]),
        ({"method": "gfn0", "task": "hess"},
         ["--gfn", "0", "--hess", "--chrg", "0", "--uhf", "0", "--input", "qforge.xcontrol",
          "--json"]),
        ({"method": "gfnff", "task": "ohess", "opt_level": "tight"},
         ["--gfnff", "--ohess", "tight", "--chrg", "0", "--uhf", "0", "--input",
          "qforge.xcontrol", "--json"]),
        ({"task": "opt", "opt_level": "vtight", "solvent": "Water", "charge": 2, "uhf": 2},
         ["--gfn", "2", "--opt", "vtight", "--chrg", "2", "--uhf", "2", "--alpb", "water",
          "--json"]),
    ],
)
def test_xtb_args(fields: dict[str, Any], expected: list[str]) -> None:
    assert water_spec(**fields).xtb_args() == expected


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("task", list(Task))
def test_xtb_args_for_every_method_and_task(method: Method, task: Task) -> None:
    args = water_spec(method=method, task=task, opt_level="loose").xtb_args()
    assert args[-1] == "--json"
    method_flags = ["--gfnff"] if method is Method.gfnff else ["--gfn", method.value[-1]]
    assert args[:len(method_flags)] == method_flags
    task_flags = {Task.sp: ["--sp"], Task.hess: ["--hess"], Task.opt: ["--opt", "loose"],
                  Task.ohess: ["--ohess", "loose"]}[task]
    assert args[len(method_flags):len(method_flags) + len(task_flags)] == task_flags
    assert "--alpb" not in args
    assert ("--input" in args) == (task in (Task.hess, Task.ohess))


def test_the_thermochemistry_temperature_goes_to_xtb_through_xcontrol() -> None:
    assert water_spec(task="sp").xcontrol() is None
    assert water_spec(task="opt").xcontrol() is None
    assert water_spec(task="hess").temperature == 298.15
    assert water_spec(task="hess").xcontrol() == "$thermo\n   temp=298.15\n$end\n"
    assert water_spec(task="ohess", temperature=350).xcontrol() == \
        "$thermo\n   temp=350.0\n$end\n"


@pytest.mark.parametrize("bad", [0, -5, float("nan"), 1e6])
def test_an_impossible_temperature_is_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="temperature"):
        water_spec(task="hess", temperature=bad)


def test_a_validated_spec_handed_over_is_kept_and_data_is_checked() -> None:
    from qforge.record import JobRecord, Status
    from qforge.spec import JobSpec as QforgeSpec  # a record's spec is qforge's

    spec = QforgeSpec(molecule=water(), charge=1, uhf=1)
    record = JobRecord(job_id="w", status=Status.QUEUED, created_at="t", updated_at="t",
                       created_ns=1, spec=spec)
    assert record.spec is spec  # not validated (nor copied) again
    # the same spec as data is checked in full: here an impossible electron count
    with pytest.raises(ValidationError, match="leaves 9 electrons"):
        JobRecord.model_validate({**record.model_dump(), "spec": {
            **spec.model_dump(), "uhf": 0}})
