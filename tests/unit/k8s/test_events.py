"""core/v1 Events on runner Jobs: what `kubectl describe job` shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from qforge.k8s import events

NOW = datetime(2026, 11, 28, 13, 30, 39, 123456, tzinfo=UTC)


def test_event_points_at_the_job_and_carries_reason_and_message() -> None:
    event = events.build_event(
        job_name="qf-water",
        namespace="chem",
        reason=events.REASON_LAUNCHED,
        message="launched",
        now=NOW,
        job_uid="1234-uid",
        host="controller-0",
    )
    assert event["apiVersion"] == "v1" and event["kind"] == "Event"
    assert event["metadata"]["namespace"] == "chem"
    assert event["metadata"]["name"].startswith("qf-water.")
    assert event["involvedObject"] == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "qf-water",
        "namespace": "chem",
        "uid": "1234-uid",
    }
    assert event["reason"] == events.REASON_LAUNCHED
    assert event["message"] == "launched"
    assert event["type"] == "Normal"
    assert event["source"] == {"component": "qforge-controller", "host": "controller-0"}
    assert event["reportingComponent"] == "qforge-controller"
    assert event["reportingInstance"] == "controller-0"
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-11-28T13:30:39Z"
    assert event["count"] == 1
    assert "eventTime" not in event  # a legacy Event: no reportingController rules apply


def test_event_without_uid_or_host_leaves_them_out() -> None:
    event = events.build_event(
        job_name="qf-water", namespace="ns", reason="Failed", message="m", now=NOW
    )
    assert "uid" not in event["involvedObject"]
    assert "host" not in event["source"]
    assert "reportingInstance" not in event


def test_event_names_differ_between_instants_and_are_deterministic() -> None:
    def name(at: datetime) -> str:
        e = events.build_event(job_name="qf-w", namespace="n", reason="R", message="m", now=at)
        return str(e["metadata"]["name"])

    assert name(NOW) == name(NOW)
    assert name(NOW) != name(NOW + timedelta(microseconds=1))
    assert name(NOW) == f"qf-w.{int(NOW.timestamp() * 1_000_000) * 1000:x}"


def test_event_time_is_rendered_in_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    e = events.build_event(job_name="j", namespace="n", reason="R", message="m", now=local)
    assert e["firstTimestamp"] == "2026-11-28T13:30:39Z"


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        events.build_event(
            job_name="j", namespace="n", reason="R", message="m", now=datetime(2026, 1, 1)
        )


@pytest.mark.parametrize("reason", ["", "x" * 129])
def test_reason_length_is_checked(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        events.build_event(job_name="j", namespace="n", reason=reason, message="m", now=NOW)


def test_long_messages_are_truncated_to_the_api_limit() -> None:
    e = events.build_event(
        job_name="j", namespace="n", reason="Failed", message="x" * 5000, now=NOW
    )
    assert len(e["message"]) == events.MAX_MESSAGE
    assert e["message"].endswith("...")


def test_failed_event_is_a_warning() -> None:
    e = events.build_event(
        job_name="j",
        namespace="n",
        reason=events.REASON_FAILED,
        message=events.failed_message("water", "timeout", "exceeded 3600 s"),
        now=NOW,
        event_type="Warning",
    )
    assert e["type"] == "Warning"
    assert e["message"] == "job water failed (timeout): exceeded 3600 s"


def test_messages() -> None:
    assert events.launched_message("water", "gfn2", "opt", "H2O") == (
        "launched job water: gfn2 opt of H2O"
    )
    assert events.completed_message("water", -5.0705444, 14.3846) == (
        "job water completed, total energy -5.07054440 Eh, HOMO-LUMO gap 14.3846 eV"
    )
    assert events.completed_message("water", None) == "job water completed"


def test_every_field_survives_the_kubernetes_clients_typed_model() -> None:
    """Round-trip through the client's CoreV1Event model: a misspelt field would be dropped."""
    client = pytest.importorskip("kubernetes.client")
    api = client.ApiClient()
    event = events.build_event(
        job_name="qf-w",
        namespace="n",
        reason=events.REASON_COMPLETED,
        message="m",
        now=NOW,
        job_uid="u",
        host="h",
    )
    typed = api.deserialize(json.dumps(event), "CoreV1Event", "application/json")
    back = api.sanitize_for_serialization(typed)
    for stamp in ("firstTimestamp", "lastTimestamp"):  # the model keeps datetimes
        assert datetime.fromisoformat(back.pop(stamp)) == datetime.fromisoformat(event[stamp])
    assert back == {k: v for k, v in event.items() if not k.endswith("Timestamp")}


def test_the_reasons_kubectl_shows_are_pinned() -> None:
    """The one place their words are written out: users grep `kubectl get events` for
    them; everything else names the constants."""
    assert (events.REASON_LAUNCHED, events.REASON_COMPLETED, events.REASON_FAILED) == (
        "Launched", "Completed", "Failed")
