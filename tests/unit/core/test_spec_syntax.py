"""The spec as qforge accepts it (qforge.spec.JobSpec): the Kubernetes syntax of a job's
name, labels and memory, with the one-line messages `qforge submit` and the server show
(moved here from the runner's tests/unit/runner/test_spec.py when the syntax moved to
qforge.kubesyntax)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from qforge.kubesyntax import memory_bytes
from qforge.record import JobRecord
from qforge.spec import JobSpec
from qforge_runner import spec as runner
from qforge_runner.errors import InputError
from tests.unit.runner.helpers import water


def water_spec(**fields: Any) -> JobSpec:
    return JobSpec(molecule=water(), **fields)


def _message(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobSpec(**fields)
    return str(InputError.from_validation_error(info.value))


@pytest.mark.parametrize("memory", ["512Mi", "2Gi", "1G", "1.5Gi", "100000000", "1e9"])
def test_memory_quantities(memory: str) -> None:
    assert water_spec(memory=memory).memory == memory


def test_memory_bytes() -> None:
    assert memory_bytes("512Mi") == 512 * 1024**2
    assert memory_bytes("2G") == 2 * 10**9
    assert memory_bytes("1e9") == 10**9
    assert water_spec(memory="64Mi").memory_bytes == 64 * 1024**2


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("lots", "memory 'lots' is not a Kubernetes quantity like 512Mi or 2Gi"),
        ("512MB", "is not a Kubernetes quantity"),
        ("500m", "is not a Kubernetes quantity"),
        ("-1Gi", "is not a Kubernetes quantity"),
        ("512", "memory '512' is only 512 bytes; xtb needs at least 64Mi"),
    ],
)
def test_bad_memory(memory: str, message: str) -> None:
    assert message in _message(molecule=water(), memory=memory)


@pytest.mark.parametrize("name", ["water", "test_water.1", "a" * 63, "A-1"])
def test_valid_names(name: str) -> None:
    assert water_spec(name=name).name == name


@pytest.mark.parametrize("name", ["", "-water", "water_", "has space", "a" * 64, "ü"])
def test_invalid_names(name: str) -> None:
    assert f"name {name!r} must be 1-63 letters" in _message(molecule=water(), name=name)


def test_valid_labels() -> None:
    labels = {"team": "theory", "example.com/project": "x-1", "empty": "", "a.b_c": "v"}
    assert water_spec(labels=labels).labels == labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"bad key": "v"}, "label key 'bad key' is not a valid Kubernetes label key"),
        ({"Bad_Prefix/key": "v"}, "label key 'Bad_Prefix/key'"),
        ({"/key": "v"}, "label key '/key'"),
        ({"k" * 64: "v"}, "is not a valid Kubernetes label key"),
        ({"team": "has space"}, "label team='has space': a value is at most 63"),
        ({"team": "v" * 64}, "label team="),
        ({"team": "-dash"}, "label team='-dash'"),
    ],
)
def test_invalid_labels(labels: dict[str, str], message: str) -> None:
    assert message in _message(molecule=water(), labels=labels)


def test_the_json_is_the_runners_field_for_field() -> None:
    spec = water_spec(method="gfn1", task="ohess", solvent="water", labels={"a": "b"},
                      memory=" 1Gi ", timeout=60, name="w")
    assert spec.memory == "1Gi"  # stripped, as before
    assert list(JobSpec.model_fields) == list(runner.JobSpec.model_fields)
    again = runner.JobSpec.model_validate_json(spec.model_dump_json())
    assert again.model_dump_json() == spec.model_dump_json()
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


def test_a_records_spec_is_qforges_and_a_runners_spec_is_checked_again() -> None:
    def record(spec: runner.JobSpec) -> JobRecord:
        return JobRecord(job_id="j", status="QUEUED", created_at="t", updated_at="t",
                         created_ns=1, spec=spec)

    made = record(runner.JobSpec(molecule=water(), name="w", memory="1Gi"))
    assert type(made.spec) is JobSpec and made.spec.memory_bytes == 1024**3
    mine = water_spec(name="w")
    assert record(mine).spec is mine  # not validated again
    with pytest.raises(ValidationError, match="name 'has space' must be 1-63 letters"):
        record(runner.JobSpec(molecule=water(), name="has space"))
