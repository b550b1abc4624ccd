"""The verdict on a tracked Job as a table: observations in, decision out."""

from __future__ import annotations

from typing import Any

import pytest

from qforge.k8s import events
from qforge.k8s.phase import Phase
from qforge.k8s.status import PodView
from qforge.k8s.verdict import (
    Observation,
    decide,
    finished_state,
    needs_final_pod,
    needs_report,
    this_run,
)
from qforge_runner.result import ErrorType, JobError, JobResult, Quality, RunReport

NAME = "qf-x"


def pod(phase: str, **kw: Any) -> PodView:
    return PodView(name=f"{NAME}-p", node="n1", phase=phase, waiting_reason=None,
                   terminated_reason=kw.get("reason"), exit_code=kw.get("code"),
                   evicted=kw.get("evicted", False))


def job(*, failed: str | None = None, succeeded: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"succeeded": succeeded}
    if failed is not None:
        status["conditions"] = [{"type": "Failed", "status": "True", "reason": failed}]
    return {"metadata": {"name": NAME, "uid": "u"}, "spec": {"activeDeadlineSeconds": 60},
            "status": status}


OK = RunReport(success=True, job_id="j", started_at="2026-01-02T00:00:00Z",
               finished_at="2026-01-02T00:00:01Z", result=JobResult(
                   energy=-5.07, gap=14.4, dipole=None, partial_charges=None,
                   geometry=None, frequencies=None, converged=True, xtb_version="6.5.1",
                   method="gfn2", task="sp", wall_time=0.1,
                   quality=Quality(converged=True, gap_ok=True, ok=True)))
SCF = JobError(type=ErrorType.convergence_error, message="SCF did not converge")
BAD = RunReport(success=False, job_id="j", started_at="2026-01-02T00:00:00Z",
                finished_at="2026-01-02T00:00:01Z", error=SCF)
REFUSAL = JobError(type=ErrorType.infrastructure_error, message="could not launch: 403")


def obs(phase: Phase = Phase.SEEN, **kw: Any) -> Observation:
    body = kw.pop("job", job())
    p = kw.pop("pod", None)
    return Observation(job_id="j", name=NAME, phase=phase, job=body, pod=p,
                       finished=finished_state(body, p), **kw)


# (case, observation, expected: None | "requeue" | "ok" | error type, event, delete)
TABLE: list[tuple[str, Observation, str | None, str | None, bool]] = [
    ("running", obs(), None, None, False),
    ("refused", obs(Phase.REFUSED, refusal=REFUSAL), "infrastructure_error", None, False),
    ("given back", obs(Phase.REQUEUED), "requeue", None, False),
    ("cancelled", obs(Phase.CANCELLED, pod=pod("Running")), "cancelled", None, False),
    ("pod succeeded", obs(pod=pod("Succeeded"), report=OK), "ok",
     events.REASON_COMPLETED, False),
    ("job complete", obs(job=job(succeeded=1), report=OK), "ok",
     events.REASON_COMPLETED, False),
    ("early result", obs(Phase.RESULT, pod=pod("Running"), report=OK, early=True), "ok",
     events.REASON_COMPLETED, False),
    ("complete, no result", obs(job=job(succeeded=1)), "infrastructure_error",
     events.REASON_FAILED, False),
    ("complete, runner error", obs(job=job(succeeded=1), report=BAD), "convergence_error",
     events.REASON_FAILED, False),
    ("failed, runner error", obs(job=job(failed="BackoffLimitExceeded"),
                                 pod=pod("Failed", code=1), report=BAD),
     "convergence_error", events.REASON_FAILED, False),
    ("deadline", obs(job=job(failed="DeadlineExceeded"), pod=pod("Failed")), "timeout",
     events.REASON_FAILED, False),
    ("oom", obs(job=job(failed="PodFailurePolicy"), pod=pod("Failed", reason="OOMKilled")),
     "resource_error", events.REASON_FAILED, False),
    ("unfit", obs(unfit="no node fits", pending=True), "resource_error",
     events.REASON_FAILED, True),
    ("unfit, placed since", obs(unfit="no node fits", pending=False), None, None, False),
    ("gone, result in", obs(Phase.GONE, job=None, report=OK), "ok",
     events.REASON_COMPLETED, False),
    ("gone", obs(Phase.GONE, job=None), "infrastructure_error", None, False),
    ("being deleted", obs(deleting=True), "infrastructure_error", None, False),
    ("deleted by a cancel", obs(Phase.GONE, job=None, cancel_requested=True),
     "cancelled", None, False),
    ("deleted after it finished", obs(deleting=True, job=job(succeeded=1), report=OK),
     "ok", events.REASON_COMPLETED, False),
]


@pytest.mark.parametrize(("case", "o", "verdict", "event", "delete"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_verdict(case: str, o: Observation, verdict: str | None, event: str | None,
                 delete: bool) -> None:
    d = decide(o)
    if verdict is None:
        assert d is None
        return
    assert d is not None
    if verdict == "requeue":
        assert d.requeue and d.error is None and not d.placed
    elif verdict == "ok":
        assert d.report is not None and d.report.success and d.error is None
    else:
        assert d.error is not None and d.error.type.value == verdict, d.error
    assert (d.event[0] if d.event else None) == event
    assert d.delete_job is delete


def test_what_the_verdict_reads_and_when() -> None:
    assert not needs_report(Phase.SEEN, False, None)  # running: no file read
    assert needs_report(Phase.SEEN, False, "Failed")
    assert needs_report(Phase.GONE, False, None)
    assert not needs_report(Phase.CANCELLED, True, None)
    assert needs_final_pod("Failed", pod("Running")) and needs_final_pod("Failed", None)
    assert not needs_final_pod("Failed", pod("Failed"))
    assert not needs_final_pod("Complete", None)  # a success never reads its pod
    assert this_run(OK, "2026-01-01T00:00:00Z") and not this_run(OK, "2026-01-03T00:00:00Z")
