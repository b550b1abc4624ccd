from __future__ import annotations

from typing import Any

from qforge.k8s.status import failure_error, job_end_state, pod_view
from qforge_runner.result import ErrorType, JobError, RunReport


def job(cond_type: str | None = None, reason: str = "", deadline: int = 60) -> dict[str, Any]:
    conds = [] if cond_type is None else [
        {"type": cond_type, "status": "True", "reason": reason, "message": "m"}]
    return {"metadata": {"name": "qf-x"}, "spec": {"activeDeadlineSeconds": deadline},
            "status": {"conditions": conds}}


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "qf-x-abcde"}, "spec": {"nodeName": "node-1"},
            "status": status}


def test_job_end_state_reads_the_terminal_conditions() -> None:
    assert job_end_state(job()) is None
    assert job_end_state(job("Complete")) == "Complete"
    assert job_end_state(job("Failed", "BackoffLimitExceeded")) == "Failed"
    assert job_end_state(job("FailureTarget", "DeadlineExceeded")) is None
    suspended = job()
    suspended["status"]["conditions"] = [{"type": "Complete", "status": "False"}]
    assert job_end_state(suspended) is None


def test_a_job_whose_pod_succeeded_is_complete_before_its_condition() -> None:
    # what the Job controller writes first: the pod counted, then SuccessCriteriaMet
    counted = job()
    counted["status"].update(succeeded=1, active=0)
    assert job_end_state(counted) == "Complete"
    assert job_end_state(job("SuccessCriteriaMet", "CompletionsReached")) == "Complete"
    running = job()
    running["status"].update(active=1, succeeded=0)
    assert job_end_state(running) is None
    two = job()
    two["spec"]["completions"] = 2
    two["status"]["succeeded"] = 1
    assert job_end_state(two) is None
    # a FailureTarget Job may still have a pod being stopped: not finished yet
    target = job("FailureTarget", "DeadlineExceeded")
    target["status"]["failed"] = 1
    assert job_end_state(target) is None


def test_deadline_exceeded_is_a_timeout() -> None:
    err = failure_error(job("Failed", "DeadlineExceeded", 5), None, None)
    assert err.type == ErrorType.timeout and "5 s" in err.message


def test_oomkilled_and_eviction_are_resource_errors() -> None:
    oom = pod_view(pod(phase="Failed", containerStatuses=[
        {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]))
    assert oom.terminated_reason == "OOMKilled" and oom.exit_code == 137
    assert failure_error(job("Failed", "BackoffLimitExceeded"), oom, None).type == \
        ErrorType.resource_error
    evicted = pod_view(pod(phase="Failed", reason="Evicted"))
    assert failure_error(job("Failed", "BackoffLimitExceeded"), evicted, None).type == \
        ErrorType.resource_error


def test_the_runners_own_typed_error_is_passed_through() -> None:
    report = RunReport(success=False, result=None,
                       error=JobError(type=ErrorType.input_error, message="bad atoms"),
                       job_id="x", started_at="t", finished_at="t")
    failed = pod_view(pod(phase="Failed", containerStatuses=[
        {"state": {"terminated": {"reason": "Error", "exitCode": 1}}}]))
    err = failure_error(job("Failed", "PodFailurePolicy"), failed, report)
    assert err == report.error


def test_a_failure_without_any_result_is_an_infrastructure_error() -> None:
    failed = pod_view(pod(phase="Failed", containerStatuses=[
        {"state": {"terminated": {"reason": "Error", "exitCode": 139}}}]))
    err = failure_error(job("Failed", "BackoffLimitExceeded"), failed, None)
    assert err.type == ErrorType.infrastructure_error and "exit code 139" in err.message


def test_pending_reasons_say_why_a_pod_does_not_run() -> None:
    unschedulable = pod_view(pod(phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/2 nodes are available: 2 Insufficient cpu."}]))
    assert unschedulable.unschedulable
    assert unschedulable.waiting_reason is not None
    assert unschedulable.waiting_reason.startswith(
        "waiting for a new node: no node has enough free cpu for its requests")
    assert "0/2 nodes are available: 2 Insufficient cpu." in unschedulable.waiting_reason
    pulling = pod_view(pod(phase="Pending", containerStatuses=[
        {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]))
    assert pulling.waiting_reason is not None and "ImagePullBackOff" in pulling.waiting_reason
    running = pod_view(pod(phase="Running", containerStatuses=[{"state": {"running": {}}}]))
    assert running.waiting_reason is None and running.node == "node-1"
