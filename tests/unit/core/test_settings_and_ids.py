from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from qforge.ids import InvalidJobId, new_job_id, validate_job_id
from qforge.settings import Settings, SettingsError


def test_defaults_match_the_original_worker() -> None:
    s = Settings.from_env({})
    assert s.jobs_dir == Path("./jobs")
    assert s.worker_id == "worker_1"
    assert s.max_concurrent_jobs == 3
    assert s.job_timeout == 3600
    assert s.xtb_timeout == 300
    assert s.poll_interval == 5
    assert s.health_check_interval == 30
    assert s.lease_seconds == 60
    assert s.index_sync_seconds == 300


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    env = {"JOBS_DIR": "/data/jobs", "MAX_CONCURRENT_JOBS": "7", "POLL_INTERVAL": "0.5",
           "NODE_SELECTOR": '{"disk": "ssd"}'}
    s = Settings.from_env(env, max_concurrent_jobs=2)
    assert s.jobs_dir == Path("/data/jobs")
    assert s.max_concurrent_jobs == 2
    assert s.poll_interval == 0.5
    assert s.node_selector == {"disk": "ssd"}


@pytest.mark.parametrize(("env", "needle"), [
    ({"MAX_CONCURRENT_JOBS": "three"}, "MAX_CONCURRENT_JOBS"),
    ({"POLL_INTERVAL": "-1"}, "POLL_INTERVAL"),
    ({"NODE_SELECTOR": "{oops"}, "NODE_SELECTOR is not valid JSON"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize("bad", ["", "..", "a/b", "Water", "-x", "x" * 64, "a.b", "a b", "abc\n"])
def test_invalid_job_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidJobId):
        validate_job_id(bad)


def test_new_job_ids_are_valid_and_readable() -> None:
    jid = new_job_id("Caffeine (test)", datetime(2026, 11, 28, 13, 30, 39, tzinfo=UTC))
    assert jid.startswith("caffeine_test_20261128_133039_")
    assert validate_job_id(jid) == jid
    assert validate_job_id(new_job_id("é" * 100))


def test_the_scratch_root_is_qforge_scratch_and_workdir_still_works_deprecated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Settings.from_env({}).scratch is None
    assert Settings.from_env({"QFORGE_SCRATCH": "/fast"}).scratch == Path("/fast")
    assert not caplog.records
    # the name the single-process worker qforge replaces used: read, with a warning
    assert Settings.from_env({"WORKDIR": "/old"}).scratch == Path("/old")
    assert [r.getMessage() for r in caplog.records] == [
        "WORKDIR is deprecated: set QFORGE_SCRATCH instead (it holds the same value)"]
    # both set: the new name wins
    assert Settings.from_env({"WORKDIR": "/old", "QFORGE_SCRATCH": "/fast"}).scratch == \
        Path("/fast")


def test_a_bad_scratch_root_is_named_by_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"^QFORGE_SCRATCH: "):
        Settings.from_env({}, scratch=["not", "a", "path"])
