"""The retry ladder applied by the scheduling core (shared by the local worker and the
Kubernetes controller) when it records a run's outcome: the job is queued again on the
next rung, each run gets a Kubernetes Job name of its own, and a job without
auto-retry, or past the last rung, ends as before."""

from __future__ import annotations

from qforge.k8s.executor import outcome_recorded
from qforge.k8s.manifests import build_job_manifest
from qforge.k8s.naming import job_name
from qforge.record import Status
from qforge.scheduling.executor import Outcome
from qforge.scheduling.ladder import ETEMP
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge_runner.failures import SCC_NOT_CONVERGED
from qforge_runner.result import ErrorType, JobError

from .conftest import WATER, water_spec
from .test_scheduler import make

SCC = JobError(type=ErrorType.convergence_error, message=f"{SCC_NOT_CONVERGED}: check it")
TIMEOUT = JobError(type=ErrorType.timeout, message="xtb did not finish in time")


def test_an_scc_failure_climbs_the_ladder_then_fails(store: JobStore) -> None:
    job = store.submit(water_spec(auto_retry=True), input_text=WATER).job_id
    sched, ex, _ = make(store)
    sched.run_once()
    names = [job_name(job, store.read(job).attempts)]
    for rung in ("etemp", "preopt"):
        ex.finish(Outcome(job, error=SCC))
        sched.run_once()  # recorded, queued again, and launched again in the same pass
        record = store.read(job)
        assert record.status is Status.RUNNING and record.history[-1].rung == rung
        names.append(job_name(job, record.attempts))
    assert ex.launched == [job] * 3
    assert len(set(names)) == 3  # each run its own Job in the cluster
    # the earlier runs' Jobs may lose their finalizer (their outcome is in the history);
    # the running one keeps it
    running = store.read(job)
    assert [outcome_recorded(running, n) for n in names] == [True, True, False]
    record = store.read(job)
    assert (record.spec.etemp, record.spec.preopt_gfnff) == (ETEMP, True)
    assert [a.status for a in record.history] == [Status.FAILED, Status.FAILED]
    ex.finish(Outcome(job, error=SCC))  # no rung left
    sched.run_once()
    record = store.read(job)
    assert record.status is Status.FAILED and record.attempt == 3
    assert record.error == SCC and store.queries.counts()[Status.FAILED] == 1


def test_a_timeout_gets_twice_the_default_time_once(store: JobStore) -> None:
    job = store.submit(water_spec(), input_text=WATER).job_id
    sched, ex, _ = make(store, auto_retry=True, job_timeout=100)  # AUTO_RETRY: every job
    sched.run_once()
    ex.finish(Outcome(job, error=TIMEOUT))
    sched.run_once()
    record = store.read(job)
    assert record.spec.timeout == 200.0 and record.status is Status.RUNNING
    manifest = build_job_manifest(job, record.spec, Settings(), attempt=record.attempts)
    assert manifest["spec"]["activeDeadlineSeconds"] == 200
    ex.finish(Outcome(job, error=TIMEOUT))
    sched.run_once()
    assert store.read(job).status is Status.FAILED


def test_without_auto_retry_or_with_a_cancel_request_a_failure_stands(
        store: JobStore) -> None:
    plain = store.submit(water_spec(), input_text=WATER).job_id
    asked = store.submit(water_spec(auto_retry=True, name="w2"), input_text=WATER).job_id
    sched, ex, _ = make(store)
    sched.run_once()
    store.cancels.request(asked)
    ex.running.discard(asked)  # it failed before the cancel reached it
    ex.finish(Outcome(plain, error=SCC))
    ex.finish(Outcome(asked, error=SCC))
    sched.run_once()
    assert store.read(plain).status is Status.FAILED and store.read(plain).history == ()
    assert store.read(asked).status is Status.FAILED and store.read(asked).history == ()
