"""A tracked Job's verdict: observations in, decision out (pure, no I/O).

The executor gathers what is known of one tracked Job (its phase, the Job's and pod's
last state from the watch, its result.json when one is needed, whether a user asked to
cancel it) into an `Observation`; `decide` turns it into a `Decision` (the outcome,
the Event to post, whether the Job must be deleted) or None while the Job runs on.
Writing the decision (the Event, the deletion) is controller/k8s/settle.py's part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qforge.k8s import autoscaling, events
from qforge.k8s.phase import Phase
from qforge.k8s.status import PodView, failure_error, job_end_state
from qforge_runner.result import ErrorType, JobError, RunReport

__all__ = ["Decision", "Observation", "decide", "finished_state", "needs_final_pod",
           "needs_report", "this_run"]


@dataclass(frozen=True)
class Observation:
    job_id: str
    name: str
    phase: Phase
    job: dict[str, Any] | None = None  # the Job's last body, while the view keeps it
    deleting: bool = False  # the Job has a deletionTimestamp
    pod: PodView | None = None
    finished: str | None = None  # "Complete" | "Failed" | None (finished_state)
    report: RunReport | None = None  # result.json, when needs_report asked for it
    early: bool = False  # `report` is this run's success, found before the pod ended
    refusal: JobError | None = None
    unfit: str | None = None
    pending: bool = False  # its pod is unschedulable
    cancel_requested: bool = False  # a user asked to cancel the job (its cancel file)


@dataclass(frozen=True)
class Decision:
    """A verdict: `requeue`, or a terminal outcome (`report` on success, else `error`);
    the Event to post (reason, message, warning) and whether to delete the Job."""

    job_id: str
    requeue: bool = False
    report: RunReport | None = None
    error: JobError | None = None
    event: tuple[str, str, bool] | None = None
    delete_job: bool = False
    placed: bool = True  # the outcome carries the Job's placement


def finished_state(job: dict[str, Any] | None, pod: PodView | None) -> str | None:
    """How the Job ended: its own terminal condition, else its pod's success (the pod's
    own end, before the Job controller counts it)."""
    finished = job_end_state(job) if job else None
    if finished is None and pod is not None and pod.phase == "Succeeded":
        return "Complete"
    return finished


def gone(phase: Phase, deleting: bool, finished: str | None) -> bool:
    """The Job is gone, or being deleted before it finished."""
    return phase is Phase.GONE or (deleting and finished is None)


def needs_report(phase: Phase, deleting: bool, finished: str | None) -> bool:
    """Whether the verdict reads result.json: the Job ended or is going."""
    return phase is not Phase.CANCELLED and (finished is not None
                                             or gone(phase, deleting, finished))


def needs_final_pod(finished: str | None, pod: PodView | None) -> bool:
    """A failed Job whose watched pod has not ended: the pod's last state (OOMKilled, an
    exit code) may not have come through the pod watch yet."""
    return finished == "Failed" and (pod is None or pod.phase not in ("Failed", "Succeeded"))


def this_run(report: RunReport, claimed_at: str | None) -> bool:
    """The report was written by this launch, not left by an earlier attempt: it began
    after the job was claimed (the same ISO-8601 format sorts as time does)."""
    return claimed_at is None or report.started_at >= claimed_at


def decide(o: Observation) -> Decision | None:
    """The verdict on one tracked Job, None while it runs on."""
    if o.phase is Phase.REFUSED:
        return Decision(o.job_id, error=o.refusal or JobError(
            type=ErrorType.infrastructure_error, message="could not launch"), placed=False)
    if o.phase is Phase.REQUEUED:
        return Decision(o.job_id, requeue=True, placed=False)
    if o.phase is Phase.CANCELLED:
        return Decision(o.job_id, error=JobError(
            type=ErrorType.cancelled,
            message=f"cancelled by user; its Kubernetes Job {o.name} was deleted"))
    finished = "Complete" if o.early else o.finished
    deleting = gone(o.phase, o.deleting, finished)
    report = o.report
    if finished == "Complete" or (deleting and finished is None and report is not None):
        if report is not None and report.success:
            result = report.result
            return Decision(o.job_id, report=report, event=(
                events.REASON_COMPLETED, events.completed_message(
                    o.job_id, result.energy if result else None,
                    result.gap if result else None), False))
        error = (report.error if report and report.error else JobError(
            type=ErrorType.infrastructure_error,
            message=f"Kubernetes Job {o.name} completed but the runner wrote no "
                    "readable result.json"))
        return _failed(o, error)
    if o.unfit is not None and o.pending and finished is None and not deleting:
        # it can never be placed: no Job (nor pod) stays
        return _failed(o, autoscaling.unfit_error(o.unfit), delete_job=True)
    if finished == "Failed" and o.job is not None:
        return _failed(o, failure_error(o.job, o.pod, report))
    if deleting:
        if o.cancel_requested:
            return Decision(o.job_id, error=JobError(type=ErrorType.cancelled,
                                                     message="cancelled by user"))
        return Decision(o.job_id, error=JobError(
            type=ErrorType.infrastructure_error,
            message=f"its Kubernetes Job {o.name} was deleted before it finished"))
    return None


def _failed(o: Observation, error: JobError, *, delete_job: bool = False) -> Decision:
    return Decision(o.job_id, error=error, delete_job=delete_job, event=(
        events.REASON_FAILED, events.failed_message(o.job_id, error.type, error.message),
        True))
