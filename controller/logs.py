"""Logging for `qforge worker` and `qforge controller`: lines that say who speaks.

Two formats (`--log-format`, setting LOG_FORMAT):
- text (default), the line shape of the worker qforge replaces, the component in front:
  `[2026-12-01 10:00:00,123] [worker] qforge.worker - INFO - Starting Worker...`
- json, for log shippers: one JSON object per line with `time` (ISO-8601 UTC), `level`,
  `component` ("worker" or "controller"), `logger` (the module, `__name__`), `message`,
  `job_id` when the line is about one job, and `exception` (its type and message, no
  traceback) when one was logged.

Every module logs through `logging.getLogger(__name__)`; the component is the process's,
set once here. A line is about a job when its call passes `extra={"job_id": ...}`, or,
by the code's convention, when its format names the job as `job %s` / `Job %s` (the id is
then taken from that argument). Bearer tokens and passwords in a message are masked;
molecules are never logged by qforge (the tests check a worker's whole log for them).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

LogFormat = Literal["text", "json"]
Component = Literal["worker", "controller", "server"]

FORMAT = "[%(asctime)s] [%(component)s] %(name)s - %(levelname)s - %(message)s"

# `job %s` in a format string: the argument at that position is the job id.
_JOB_PLACEHOLDER = re.compile(r"\b[Jj]ob %s")
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[sdifrxXeEgGc%]")
_SECRETS = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 <redacted>"),
    (re.compile(r"(?i)\b(authorization|token|password|secret)([\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"',}]+"), r"\1\2<redacted>"),
)


def redact(text: str) -> str:
    """Mask bearer tokens and `token=`/`password:`-style values in a log message."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def job_id_of(record: logging.LogRecord) -> str | None:
    """The job a log line is about: `extra={"job_id": ...}`, else the argument that fills
    the first `job %s` of its format string."""
    explicit = getattr(record, "job_id", None)
    if explicit:
        return str(explicit)
    msg = record.msg
    if not isinstance(msg, str) or not isinstance(record.args, tuple):
        return None
    found = _JOB_PLACEHOLDER.search(msg)
    if found is None:
        return None
    position = sum(1 for p in _PLACEHOLDER.findall(msg[: found.start() + 4]) if p != "%%")
    arg = record.args[position] if position < len(record.args) else None
    return arg if isinstance(arg, str) else None


class ComponentFilter(logging.Filter):
    """Stamps every record with the process's component ("worker" or "controller")."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never a multi-line traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "component": getattr(record, "component", None),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        job_id = job_id_of(record)
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["exception"] = redact(f"{type(exc).__name__}: {exc}")
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def setup_logging(log_dir: Path | None = None, level: int = logging.INFO, *,
                  component: Component = "worker", fmt: LogFormat = "text") -> None:
    """Log to stderr (and to `<log_dir>/<component>.log`) in the chosen format."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_dir / f"{component}.log"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(make_formatter(fmt))
        handler.addFilter(ComponentFilter(component))
        root.addHandler(handler)
    root.setLevel(level)
