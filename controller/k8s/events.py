"""core/v1 Events on runner Jobs, built by pure functions (no I/O, no client).

The controller posts one Event when it launches a Job, and one when the calculation
completes (with its energy) or fails (with its typed reason), so `kubectl describe job`
tells the story. Events are "legacy" core/v1 Events (no eventTime), which every API
server version accepts from any client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from qforge.k8s import naming

__all__ = [
    "MAX_MESSAGE",
    "REASON_COMPLETED",
    "REASON_FAILED",
    "REASON_LAUNCHED",
    "build_event",
    "completed_message",
    "failed_message",
    "launched_message",
]

REASON_LAUNCHED: Final = "Launched"
REASON_COMPLETED: Final = "Completed"
REASON_FAILED: Final = "Failed"
# The API server rejects Event notes longer than 1 kB (events.k8s.io); keep to it here too.
MAX_MESSAGE: Final = 1024

EventType = Literal["Normal", "Warning"]


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncate(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def build_event(
    *,
    job_name: str,
    namespace: str,
    reason: str,
    message: str,
    now: datetime,
    job_uid: str | None = None,
    event_type: EventType = "Normal",
    component: str = naming.MANAGED_BY,
    host: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about the runner Job `job_name` in `namespace`.

    The name follows kubectl's ``<object>.<unix nanoseconds in hex>``, so two Events
    for one Job at different instants never clash; `now` must be timezone-aware.
    """
    if not reason or len(reason) > 128:
        raise ValueError("event reason must have 1 to 128 characters")
    nanos = int(now.timestamp() * 1_000_000) * 1_000
    stamp = _timestamp(now)
    involved: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "namespace": namespace,
    }
    if job_uid:
        involved["uid"] = job_uid
    source: dict[str, str] = {"component": component}
    if host:
        source["host"] = host
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{job_name}.{nanos:x}",
            "namespace": namespace,
            "labels": dict(naming.RUNNER_SELECTOR),
        },
        "involvedObject": involved,
        "reason": reason,
        "message": _truncate(message),
        "type": event_type,
        "source": source,
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    if host:
        event["reportingInstance"] = host
    return event


def launched_message(job_id: str, method: str, task: str, formula: str) -> str:
    """`Launched` message: which calculation this Job runs."""
    return f"launched job {job_id}: {method} {task} of {formula}"


def completed_message(job_id: str, energy: float | None, gap: float | None = None) -> str:
    """`Completed` message, with the total energy (Eh) and HOMO-LUMO gap (eV) if known."""
    parts = [f"job {job_id} completed"]
    if energy is not None:
        parts.append(f"total energy {energy:.8f} Eh")
    if gap is not None:
        parts.append(f"HOMO-LUMO gap {gap:.4f} eV")
    return ", ".join(parts)


def failed_message(job_id: str, error_type: str, message: str) -> str:
    """`Failed` message: the typed reason and what a chemist can act on."""
    return f"job {job_id} failed ({error_type}): {message}"
