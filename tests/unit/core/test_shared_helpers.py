"""The controller words every pydantic error with qforge_runner.errors.validation_line (a
bad setting, a damaged record) and reads result.json into a report in one place."""

from __future__ import annotations

import pytest

from qforge.settings import Settings, SettingsError
from qforge.store.jobstore import CorruptRecord, JobStore, load_report
from qforge_runner.atomic import write_text_atomic
from qforge_runner.result import ErrorType, JobError, RunReport
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.unit.core.conftest import water_spec


def test_a_bad_setting_is_named_by_its_variable() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"MAX_CONCURRENT_JOBS": "0"})
    assert str(info.value) == "MAX_CONCURRENT_JOBS: Input should be greater than or equal to 1"


def test_a_damaged_record_says_which_field_in_one_line(store: JobStore) -> None:
    record = store.submit(water_spec(), input_text=WATER)
    meta = store.layout.job_dir(record.job_id) / "metadata.json"
    meta.write_text(meta.read_text().replace('"QUEUED"', '"DONE"', 1))
    with pytest.raises(CorruptRecord) as info:
        store.read(record.job_id)
    assert info.value.reason.startswith("status: Input should be 'QUEUED', 'RUNNING'")
    assert "\n" not in str(info.value)


def test_load_report_reads_a_report_and_nothing_else(store: JobStore) -> None:
    record = store.submit(water_spec(), input_text=WATER)
    job_dir = store.layout.job_dir(record.job_id)
    assert load_report(job_dir) is None  # no result.json yet
    write_text_atomic(job_dir / "result.json", "{not json")
    assert load_report(job_dir) is None
    write_text_atomic(job_dir / "result.json", '{"success": "maybe"}')
    assert load_report(job_dir) is None
    report = RunReport(success=False, job_id=record.job_id,
                       error=JobError(type=ErrorType.timeout, message="xtb ran 1 s"),
                       started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z")
    write_text_atomic(job_dir / "result.json", report.model_dump_json())
    assert load_report(job_dir) == report
