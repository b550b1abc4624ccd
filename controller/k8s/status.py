"""Reading Kubernetes Job and pod status into qforge verdicts. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qforge.k8s.autoscaling import pod_requests, unschedulable_reason
from qforge.podreason import pod_waiting_reason
from qforge_runner.result import ErrorType, JobError, RunReport


@dataclass(frozen=True)
class PodView:
    """What matters of a runner pod."""

    name: str
    node: str | None
    phase: str | None
    waiting_reason: str | None  # why it does not run yet, for `qforge show`
    terminated_reason: str | None  # e.g. OOMKilled, Error, Completed
    exit_code: int | None
    evicted: bool
    unschedulable: bool = False  # the scheduler found no node for it (yet)
    reason: str | None = None  # Pending: why, in one word (Unschedulable, ErrImagePull, ...)


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = obj.get("status") or {}
    return list(status.get("conditions") or [])


def _true(cond: Mapping[str, Any]) -> bool:
    return str(cond.get("status")) == "True"


def job_end_state(job: Mapping[str, Any]) -> str | None:
    """'Complete', 'Failed' or None while the Job is unfinished.

    A Job whose pod has succeeded is complete: the Job controller counts the pod in
    `status.succeeded` (and, since Kubernetes 1.31, sets SuccessCriteriaMet) a second or
    more before it sets the Complete condition, and its slot is free from that moment,
    since the pod has ended. A failure waits for the Failed condition: a FailureTarget
    Job (deadline exceeded, ...) may still have a pod being stopped."""
    for cond in _conditions(job):
        if cond.get("type") in ("Complete", "Failed") and _true(cond):
            return str(cond["type"])
        if cond.get("type") == "SuccessCriteriaMet" and _true(cond):
            return "Complete"
    succeeded = (job.get("status") or {}).get("succeeded") or 0
    completions = (job.get("spec") or {}).get("completions") or 1
    return "Complete" if succeeded >= completions else None


def job_failure_reason(job: Mapping[str, Any]) -> tuple[str, str]:
    for cond in _conditions(job):
        if cond.get("type") == "Failed" and _true(cond):
            return str(cond.get("reason") or ""), str(cond.get("message") or "")
    return "", ""


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    waiting = None
    terminated = None
    exit_code = None
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        last = cs.get("lastState") or {}
        if state.get("waiting"):
            w = state["waiting"]
            reason = w.get("reason") or "Waiting"
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "CreateContainerConfigError", "CreateContainerError"):
                waiting = f"image or container problem: {reason}: {w.get('message', '')}".strip()
        term = state.get("terminated") or last.get("terminated")
        if term:
            terminated = term.get("reason")
            exit_code = term.get("exitCode")
    unschedulable = False
    if waiting is None and status.get("phase") == "Pending":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and not _true(cond):
                unschedulable = cond.get("reason") == "Unschedulable"
                waiting = (unschedulable_reason(str(cond.get("message") or ""),
                                                pod_requests(pod)) if unschedulable else
                           f"pod Pending: {cond.get('reason') or 'not scheduled'}: "
                           f"{cond.get('message') or ''}".strip())
    evicted = status.get("reason") == "Evicted" or any(
        c.get("type") == "DisruptionTarget" and _true(c) for c in status.get("conditions") or [])
    return PodView(
        name=str(meta.get("name", "")),
        node=spec.get("nodeName"),
        phase=status.get("phase"),
        waiting_reason=waiting,
        terminated_reason=terminated,
        exit_code=exit_code,
        evicted=evicted,
        unschedulable=unschedulable,
        reason=pod_waiting_reason(pod),
    )


def latest_pod(views: list[PodView]) -> PodView | None:
    """Of a Job's pods as read from the API, the one that says most: the last that
    ended, else the last."""
    ended = [v for v in views if v.phase in ("Failed", "Succeeded")]
    return (ended or views)[-1] if ended or views else None


def failure_error(job: Mapping[str, Any], pod: PodView | None,
                  report: RunReport | None) -> JobError:
    """The typed error of a Failed Job."""
    reason, message = job_failure_reason(job)
    if reason == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return JobError(type=ErrorType.timeout,
                        message=f"the calculation ran longer than its timeout ({deadline} s); "
                                "Kubernetes stopped it (activeDeadlineSeconds)")
    if pod is not None and pod.terminated_reason == "OOMKilled":
        return JobError(type=ErrorType.resource_error,
                        message="the runner pod ran out of memory (OOMKilled); "
                                "submit with a larger --memory")
    if pod is not None and pod.evicted:
        return JobError(type=ErrorType.resource_error,
                        message=f"the runner pod {pod.name} was evicted from its node")
    if report is not None and not report.success and report.error is not None:
        return report.error
    code = f" (exit code {pod.exit_code})" if pod and pod.exit_code is not None else ""
    detail = f": {message}" if message else ""
    return JobError(type=ErrorType.infrastructure_error,
                    message=f"the Kubernetes Job failed{code}, reason {reason or 'unknown'}"
                            f"{detail}; the runner wrote no result")
