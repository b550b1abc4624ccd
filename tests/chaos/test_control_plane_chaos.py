"""Chaos on the control plane (issue 12, point 1): 300 jobs at cap 30 on kwok nodes while,
at random moments (a seeded schedule, the seed printed; replay with
QFORGE_CHAOS_SEED=<seed>), the controller is SIGKILLed 15 times and restarted at once (as
its Deployment would), kube-apiserver is restarted twice and etcd once (same data dir,
same ports), and 10 Running runner pods are deleted.

The witnesses are independent of the controller: a Job and a pod watch of their own
(tests/chaos/witness.py, resumed across the restarts), the job store's records, and the
time from each kill to the next Job created while jobs are queued (the Lease's 15 s and
the restart included; target < 30 s).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from qforge.k8s import naming
from tests.chaos.witness import Witness
from tests.cluster.helpers import (
    RUN_FOR,
    RUN_FOR_MAX,
    Controller,
    Site,
    api_client,
    submit_direct,
)
from tests.kube import ControlPlane
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

JOBS, CAP = 300, 30
KILLS, APISERVER_RESTARTS, ETCD_RESTARTS, POD_DELETIONS = 15, 2, 1, 10
# A kill costs the Lease's expiry (up to its 15 s) and a restart: ~15 s without a launch.
# Pods live 12 to 56 s (kwok draws each one's lifetime): 34 s on average keeps jobs
# queued through the whole schedule (about 0.7 launches a second through it, ~80 jobs
# still queued at its end), and pods end at every moment, so a slot is free when the new
# controller leads. (With one lifetime for all, the pods refilled together at a recovery
# end together: the next kill's "next Job" would wait for them, not for the controller.)
LIFETIME = ("12s", "56s")
RECOVERY_TARGET = 30.0  # seconds, kill -> next Job created
SMALL = {"RUNNER_CPU": "10m", "RUNNER_MEMORY": "16Mi"}  # 30 pods fit the kwok nodes


def _seed() -> int:
    given = os.environ.get("QFORGE_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(10**6)


@dataclass
class Chaos:
    site: Site
    cluster: ControlPlane
    witness: Witness
    rng: random.Random
    controller: Controller | None = None
    recoveries: list[float] = field(default_factory=list)
    restarts: list[tuple[str, float, float]] = field(default_factory=list)
    deleted: dict[str, str] = field(default_factory=dict)  # pod -> job id

    def start_controller(self) -> Controller:
        """`qforge controller` as its Deployment runs it (a new process, same settings)."""
        return self.site.controller({RUN_FOR: LIFETIME[0], RUN_FOR_MAX: LIFETIME[1]},
                                    MAX_CONCURRENT_JOBS=str(CAP), **SMALL)

    def queued(self) -> int:
        return JOBS - self.witness.job_ids_seen()

    def next_job_after(self, since: float, known: set[str], what: str) -> float:
        """Seconds from `since` (monotonic) to the first sight of a Job not in `known`."""
        def new_job() -> float | None:
            seen = self.witness.first_seen
            times = [seen[n] for n in self.witness.job_names_now() - known]
            return min(times) if times else None
        first = wait_until(new_job, 180, what, interval=0.1)
        assert first is not None
        return first - since

    def jobs_in_cluster(self) -> set[str]:
        return {j["metadata"]["name"] for j in self.site.k8s_jobs()}

    def run(self, log: Callable[[str], None]) -> None:
        actions = (["kill"] * KILLS + ["kube-apiserver"] * APISERVER_RESTARTS
                   + ["etcd"] * ETCD_RESTARTS + ["delete-pod"] * POD_DELETIONS)
        self.rng.shuffle(actions)
        for action in actions:
            # the random moment: a pause drawn from the seeded schedule, not a wait for
            # anything (every wait below is bounded)
            time.sleep(self.rng.uniform(0.2, 2.0))
            if action == "kill":
                self.kill(log)
            elif action == "delete-pod":
                self.delete_pod(log)
            else:
                self.restart(action, log)

    def kill(self, log: Callable[[str], None]) -> None:
        queued = self.queued()
        assert queued > 0, ("the queue drained before the chaos schedule ended: a kill "
                            "must land while jobs are queued")
        old = self.controller
        assert old is not None
        t_kill = time.monotonic()
        old.kill()  # SIGKILL
        self.controller = self.start_controller()  # restarted at once
        known = self.jobs_in_cluster()  # everything the dead one could have created
        recovery = self.next_job_after(t_kill, known, f"a Job after killing {old.name}")
        self.recoveries.append(recovery)
        log(f"chaos: kill {len(self.recoveries)}/{KILLS} ({old.name}, pid {old.pid}, "
            f"{queued} queued): next Job created {recovery:.1f} s after the kill")

    def restart(self, component: str, log: Callable[[str], None]) -> None:
        t0 = time.monotonic()
        healthy = self.cluster.restart(component, timeout=120)
        known = self.jobs_in_cluster()  # listed once it is back: later Jobs are new
        resumed = (self.next_job_after(t0, known, f"a Job after restarting {component}")
                   if self.queued() > 0 else 0.0)
        self.restarts.append((component, healthy, resumed))
        log(f"chaos: {component} restarted, healthy after {healthy:.1f} s; next Job "
            f"{resumed:.1f} s after the stop")

    def delete_pod(self, log: Callable[[str], None]) -> None:
        """Delete a Running runner pod (as `kubectl delete pod` does). Only a deletion
        that interrupted the pod counts; another is picked when the pod had ended, or
        ended on its own as it was deleted (its lifetime ran out in the same instant:
        the API server answered Running, and kwok's Succeeded came next)."""
        from kubernetes import client

        core = client.CoreV1Api(api_client(self.cluster))
        for _ in range(20):
            pods = wait_until(lambda: [p for p in self.witness.running_pods
                                       if p not in self.deleted], 120,
                              "a Running runner pod")
            pod = self.rng.choice(pods)
            answer = core.api_client.sanitize_for_serialization(
                core.delete_namespaced_pod(pod, self.site.namespace))
            job_id = naming.job_id_from_metadata(answer.get("metadata") or {}) or "?"
            if (answer.get("status") or {}).get("phase") != "Running":
                log(f"chaos: runner pod {pod} had ended before its deletion; another")
                continue
            ended = wait_until(functools.partial(self.witness.deletion_outcome, pod, job_id), 90,
                               f"the end of deleted runner pod {pod}")
            if ended == "interrupted":
                self.deleted[pod] = job_id
                log(f"chaos: deleted runner pod {pod} (job {job_id}), "
                    f"{len(self.deleted)}/{POD_DELETIONS}")
                return
            log(f"chaos: runner pod {pod} ended on its own as it was deleted; another")
        raise AssertionError("no Running runner pod could be deleted in 20 tries")


@pytest.mark.timeout(1500)  # about 8 minutes; the project's 600 s is for single tests
def test_chaos_on_the_control_plane_loses_nothing_and_runs_no_job_twice(
        site: Site, control_plane: ControlPlane, kube: Any) -> None:
    seed = _seed()
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    log(f"chaos: seed {seed} (replay: QFORGE_CHAOS_SEED={seed})")
    job_ids = submit_direct(site, JOBS)
    with Witness(lambda: api_client(control_plane), site.namespace) as witness:
        chaos = Chaos(site, control_plane, witness, random.Random(seed))
        chaos.controller = chaos.start_controller()
        wait_until(lambda: witness.job_ids_seen() >= 1, 180, "the first Job")
        chaos.run(log)
        assert witness.errors() == []  # both watches lived through it all
        states = site.wait_terminal(job_ids, 900)
        # the witness has seen every job's Job succeed (the assertion below names any
        # job it has not)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: all(witness.succeeded.get(j) for j in job_ids), 60,
                       "the witness to see every Job succeed")
    wall = time.monotonic() - started
    jobs_made = sum(len(n) for n in witness.job_names.values())
    log(f"chaos: recovery after each kill (s): "
        f"{' '.join(f'{r:.1f}' for r in chaos.recoveries)}")
    log(f"chaos: witness: max unfinished {witness.max_unfinished} (cap {CAP}), "
        f"{jobs_made} Jobs for {JOBS} jobs, "
        f"{sum(len(p) for p in witness.pod_names.values())} pods; Job watch "
        f"{witness.jobs.lists} listings, {witness.jobs.resumes} resumes, "
        f"{witness.jobs.outages} outages; pod watch {witness.pods.lists} listings, "
        f"{witness.pods.resumes} resumes, {witness.pods.outages} outages")

    assert witness.errors() == []
    assert set(states.values()) == {"COMPLETED"}, {s for s in states.values()}
    several = {j: sorted(n) for j in job_ids if len(n := witness.succeeded.get(j, set())) != 1}
    assert several == {}, f"jobs without exactly one successful Job: {several}"
    assert witness.max_unfinished == CAP, witness.max_unfinished  # reached, never exceeded
    assert witness.overlaps == [], witness.overlaps[:5]
    # the deletions were real: each deleted pod's job ran in a replacement pod
    assert len(chaos.deleted) == POD_DELETIONS
    unreplaced = {pod: sorted(witness.pod_names[j]) for pod, j in chaos.deleted.items()
                  if len(witness.pod_names[j]) < 2}
    assert unreplaced == {}, f"deleted pods whose job had no other pod: {unreplaced}"
    assert len(chaos.recoveries) == KILLS and len(chaos.restarts) == (
        APISERVER_RESTARTS + ETCD_RESTARTS)
    slow = [r for r in chaos.recoveries if r >= RECOVERY_TARGET]
    assert slow == [], f"recoveries of {RECOVERY_TARGET:g} s or more: {slow}"
    log(f"chaos: {JOBS} jobs at cap {CAP} all COMPLETED, one successful Job each; "
        f"{KILLS} controller SIGKILLs, {APISERVER_RESTARTS} kube-apiserver and "
        f"{ETCD_RESTARTS} etcd restarts, {POD_DELETIONS} runner pods deleted: survived; "
        f"recovery max {max(chaos.recoveries):.1f} s, median "
        f"{statistics.median(chaos.recoveries):.1f} s (target < {RECOVERY_TARGET:g} s); "
        f"seed {seed}; {wall:.0f} s")
