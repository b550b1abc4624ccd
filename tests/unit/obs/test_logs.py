"""qforge.logs: who speaks, the job a line is about, JSON lines, no secrets."""

from __future__ import annotations

import json
import logging

import pytest

from qforge.logs import JsonFormatter, TextFormatter, job_id_of, redact, setup_logging


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("qforge.scheduling.core", logging.INFO, __file__, 1, msg,
                            args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    rec.component = "worker"
    return rec


@pytest.mark.parametrize(("msg", "args", "expected"), [
    ("Starting execution for job %s", ("water_1",), "water_1"),
    ("Job %s completed: E=%.10f Eh%s in %.2f s", ("w_2", -5.07, "", 1.0), "w_2"),
    ("Job %s: worker %s stopped responding; requeued (attempt %d of %d)",
     ("w_3", "other", 1, 3), "w_3"),
    ("%d%% done, job %s next", (50, "w_4"), "w_4"),
    ("Found %d queued jobs", (3,), None),
    ("Health check: active_jobs=%d, status=healthy, worker=%s", (0, "worker_1"), None),
])
def test_the_job_a_line_is_about_comes_from_its_job_placeholder(
        msg: str, args: tuple[object, ...], expected: str | None) -> None:
    assert job_id_of(record(msg, *args)) == expected


def test_an_explicit_job_id_wins() -> None:
    assert job_id_of(record("Found %d queued jobs", 1, job_id="given")) == "given"


def test_json_lines_carry_time_level_component_logger_message_job() -> None:
    line = JsonFormatter().format(record("Starting execution for job %s", "water_1"))
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["component"] == "worker"
    assert entry["logger"] == "qforge.scheduling.core"
    assert entry["message"] == "Starting execution for job water_1"
    assert entry["job_id"] == "water_1"
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_an_exception_is_one_field_not_a_multiline_traceback() -> None:
    try:
        raise RuntimeError("creating Job x: 403 Forbidden")
    except RuntimeError:
        import sys

        rec = record("Could not launch job %s", "w_1")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert json.loads(line)["exception"] == "RuntimeError: creating Job x: 403 Forbidden"


def test_text_lines_keep_the_original_shape_with_the_component() -> None:
    line = TextFormatter().format(record("Found %d queued jobs", 2))
    assert line.endswith("] [worker] qforge.scheduling.core - INFO - Found 2 queued jobs")


@pytest.mark.parametrize("text", [
    "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.abc.def",
    "token=s3cr3t-value",
    'password: "hunter2"',
])
def test_secrets_are_masked(text: str) -> None:
    masked = redact(text)
    assert "<redacted>" in masked
    assert not any(s in masked for s in ("eyJhbGciOiJSUzI1NiJ9", "s3cr3t", "hunter2"))


def test_setup_logging_writes_the_components_file_in_json(tmp_path: object,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(folder, component="controller", fmt="json")
        logging.getLogger("qforge.k8s.operator").info("Starting Controller...")
    finally:
        for handler in list(root.handlers):
            handler.close()
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    entry = json.loads((folder / "controller.log").read_text().splitlines()[0])
    assert entry["component"] == "controller" and entry["message"] == "Starting Controller..."
    assert json.loads(capsys.readouterr().err.splitlines()[0]) == entry
