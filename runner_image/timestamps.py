"""The one timestamp format of qforge's files: result.json, metadata.json, heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    """ISO-8601 UTC with microseconds, e.g. 2026-11-28T13:30:39.123456Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
