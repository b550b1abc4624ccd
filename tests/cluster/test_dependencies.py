"""Follow-up steps on the real control plane: a controller SIGKILLed and restarted while
children wait; each child runs once (one Kubernetes Job) from its parent's optimised
geometry, or is CANCELLED with its reason — never lost, never run twice."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from qforge.k8s import naming
from qforge_runner.spec import JobSpec
from tests.cluster.helpers import RUN_FOR, JobWatch, Results, Site
from tests.molecules import WATER_EXPERIMENTAL
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def _submit_then(site: Site, *options: str) -> tuple[str, str]:
    out = site.qforge("submit", "-", "--json", "--force", "--task", "opt", "--then", "hess",
                      *options, stdin=WATER_EXPERIMENTAL)
    parent, child = (json.loads(line)["job_id"] for line in out.stdout.splitlines())
    return parent, child


def _released_spec(site: Site, child: str, optimised: Any) -> JobSpec:
    """The child's spec as its release writes it: the parent's optimised geometry."""
    return site.spec(child).model_copy(update={"molecule": optimised})


def test_controller_restart_with_children_waiting(site: Site, kube: Any,
                                                  results: Results) -> None:
    ok_parent, ok_child = _submit_then(site)
    bad_parent, bad_child = _submit_then(site, "--name", "doomed")
    # the runner's honest outputs, in place before any pod ends (as submit_succeeding):
    # the parent's optimisation, and the child's Hessian at the geometry it will be given
    parent_report = results.success(site.spec(ok_parent))
    assert parent_report.result is not None and parent_report.result.geometry is not None
    site.write_result(ok_parent, parent_report)
    released = _released_spec(site, ok_child, parent_report.result.geometry)
    site.write_result(ok_child, results.success(released))
    site.write_result(bad_parent, Results.input_error("xtb refused the input"))
    assert site.record(ok_child)["waiting_reason"].startswith("waiting for job ")

    killed = threading.Event()

    def kill_on_first_job(job: dict[str, Any]) -> None:
        if not killed.is_set():
            ctl.kill()  # SIGKILL as soon as a parent's Job exists: children still wait
            killed.set()

    with JobWatch(kube, site.namespace, on_added=kill_on_first_job) as watch:
        ctl = site.controller({RUN_FOR: "3s"})
        wait_until(killed.is_set, 60, "the first Job, then the kill")
        assert site.status(ok_child) == "QUEUED" and site.status(bad_child) == "QUEUED"
        again = site.controller({RUN_FOR: "3s"})
        states = site.wait_terminal([ok_parent, ok_child, bad_parent, bad_child], 180)
    assert watch.error is None, watch.error
    assert states == {ok_parent: "COMPLETED", ok_child: "COMPLETED",
                      bad_parent: "FAILED", bad_child: "CANCELLED"}, states
    child = site.record(ok_child)
    assert JobSpec.model_validate(child["spec"]).molecule.geometry == \
        parent_report.result.geometry.geometry
    assert child["attempts"] == 1 and child["result"]["thermochemistry"] is not None
    cancelled = site.record(bad_child)
    assert cancelled["error"]["type"] == "cancelled"
    assert cancelled["error"]["message"].startswith(
        f"not run: the job it depends on, {bad_parent} FAILED (input_error: ")
    # the watch saw every Job ever created: one per job that ran, none for the child
    # that was cancelled
    assert {j: len(watch.names_by_job_id.get(j, ())) for j in states} == {
        ok_parent: 1, ok_child: 1, bad_parent: 1, bad_child: 0}
    assert naming.job_name(ok_child) in watch.names_by_job_id[ok_child]
    assert f"Job {ok_child} released" in again.log_text()
