"""qforge-runner: reading the job folder, and the input errors that exit with 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qforge_runner.cli import EXIT_INPUT, load_job, main
from qforge_runner.errors import InputError
from qforge_runner.result import ErrorType, RunReport
from tests.unit.runner.helpers import water_spec


def _job(tmp_path: Path, metadata: object | None, raw: str | None = None) -> Path:
    job = tmp_path / "water_20261128_133039_k3f9"
    job.mkdir()
    if raw is not None:
        (job / "metadata.json").write_text(raw)
    elif metadata is not None:
        (job / "metadata.json").write_text(json.dumps(metadata))
    return job


def _result(job: Path) -> RunReport:
    return RunReport.model_validate_json((job / "result.json").read_text())


def test_load_job_reads_spec_and_job_id(tmp_path: Path) -> None:
    spec = water_spec(task="sp")
    job = _job(tmp_path, {"schema_version": 1, "job_id": "water_1", "status": "RUNNING",
                          "spec": spec.model_dump(mode="json")})
    assert load_job(job) == ("water_1", spec)


def test_load_job_falls_back_to_the_folder_name(tmp_path: Path) -> None:
    job = _job(tmp_path, {"spec": water_spec().model_dump(mode="json")})
    assert load_job(job)[0] == "water_20261128_133039_k3f9"


@pytest.mark.parametrize(
    ("metadata", "raw", "message"),
    [
        (None, None, "metadata.json: not found"),
        (None, "{not json", "metadata.json: not valid JSON (line 1"),
        ({"job_id": "x"}, None, "metadata.json: has no 'spec' object"),
        ({"spec": {"molecule": "2\n\nO 0 0 0\nH 0 0 0.97\n"}}, None,
         "metadata.json: spec: charge 0 with uhf 0 leaves 9 electrons for HO"),
        ({"spec": {"molecule": "1\n\nXx 0 0 0\n"}}, None,
         "metadata.json: spec.molecule: line 3: unknown element 'Xx'"),
        ({"spec": {**water_spec().model_dump(mode="json"), "solvent": "lava"}}, None,
         "metadata.json: spec.solvent: unknown solvent 'lava'"),
    ],
)
def test_load_job_errors(tmp_path: Path, metadata: object, raw: str | None,
                         message: str) -> None:
    job = _job(tmp_path, metadata, raw)
    with pytest.raises(InputError) as info:
        load_job(job)
    assert message in str(info.value)


def test_unreadable_metadata_is_an_input_error(tmp_path: Path) -> None:
    job = _job(tmp_path, None)
    (job / "metadata.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match=r"metadata\.json: cannot be read"):
        load_job(job)


def test_bad_metadata_exits_2_and_records_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(tmp_path, {"job_id": "water_1", "spec": {"molecule": "1\n\nXx 0 0 0\n"}})
    assert main([str(job)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("qforge-runner: ") and "unknown element 'Xx'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    report = _result(job)
    assert report.success is False and report.error is not None
    assert report.error.type is ErrorType.input_error
    assert "unknown element 'Xx'" in report.error.message


def test_missing_job_folder_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope")]) == EXIT_INPUT
    assert "no such job folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["soon", "-5", "0", "nan"])
def test_bad_timeout_setting_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], value: str) -> None:
    job = _job(tmp_path, {"spec": water_spec().model_dump(mode="json")})
    monkeypatch.setenv("XTB_TIMEOUT", value)
    assert main([str(job)]) == EXIT_INPUT
    assert f"XTB_TIMEOUT={value!r}" in capsys.readouterr().err
