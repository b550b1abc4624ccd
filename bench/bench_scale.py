"""The controller at cluster scale: 5,000 jobs at cap 500 on kwok nodes.

On one test control plane (tests/kube: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok with 5 fake nodes of 1,000 pods each; pods live RUN_FOR):

Three phases, BENCH_SCALE_ROUNDS rounds of them (1 by default), their order rotated each
round, each in a namespace and a store of its own:

- baseline: a bare kubernetes-client loop creates the same 5,000 Jobs (the controller's
  own manifests, without its finalizer) keeping at most 500 unfinished, counted by its
  own watch, with as many writer threads as the controller; time until all complete;
  then its Jobs and pods are deleted (the next phase meets the same empty cluster);
- cleanup: the same bare loop, which also deletes each Job BENCH_SCALE_KEEP_SECONDS
  after it completed, as the controller does (the bare loop's API cost as the issue
  states it: a Job's create and its deletion). The plain baseline's deletions and their
  pods' garbage collection come after its timed window, the controller's inside its
  own: the controller is compared with both;
- watch: 5,000 jobs in the store, `qforge controller` at cap 500 as it is by default:
  Jobs created per second (sustained: first to last creation), time until all are
  COMPLETED in the store (ratio baseline/qforge, target >= 0.95), CPU per job of every
  process (target <= 1.1x the baseline's), API requests per job (the controller's own
  count, once it has deleted every Job, BENCH_SCALE_KEEP_SECONDS after its outcome:
  target <= 2 writes, the bare loop's create and deletion), peak RSS of the controller
  process (target < 300 MB);
- nowatch: the same with KUBE_POD_WATCH=false (no pod watch: pods read only when
  needed), and what the pod watch costs per job.

Then restart: the store gets 100,000 finished records; a controller with 500 running
Jobs is SIGKILLed (its Lease names a pod that no longer exists); a new controller starts:
seconds from its start to its first new Job (target <= 10 s).

Prints `bench:` lines. Heavy on 2 cores (~15 min a round at 5,000 jobs): run by hand or
by `make bench`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from benchlib import env_int, log

from qforge.k8s import naming
from qforge.k8s.manifests import build_job_manifest
from qforge.k8s.watch import ListWatch
from qforge.record import JobRecord, Status
from qforge.settings import Settings
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.timestamps import utcnow
from tests.cluster.helpers import RUN_FOR, NodeLeases, Results, Site, api_client, wait_until
from tests.cluster.test_scale import SMALL, submit_direct
from tests.kube import ClusterOptions, ControlPlane
from tests.molecules import WATER_EXPERIMENTAL as WATER

JOBS = env_int("BENCH_SCALE_JOBS", 5000)
CAP = env_int("BENCH_SCALE_CAP", 500)
RECORDS = env_int("BENCH_SCALE_RECORDS", 100_000)
RUNNING = env_int("BENCH_SCALE_RUNNING", 500)
POD_LIFE = os.environ.get("BENCH_SCALE_POD_LIFE", "5s")
KEEP_SECONDS = env_int("BENCH_SCALE_KEEP_SECONDS", 10)
WRITERS = Settings().kube_api_writers
# Rounds of the three phases, their order rotated each round (the ratios' median is the
# figure: one round's ratio moves by 0.2 on this machine).
ROUNDS = env_int("BENCH_SCALE_ROUNDS", 1)
PHASES = ["baseline", "watch", "nowatch", "cleanup"]


class Watch:
    """Arrival time of every Job of the namespace, and which have succeeded: the
    controller's own list-then-watch (raw JSON, no client model objects, which would cost
    the bench process more CPU than the requests themselves)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        from kubernetes import client

        self.added: dict[str, float] = {}
        self.done: dict[str, float] = {}  # name -> when it was seen succeeded
        self.finished: deque[tuple[float, str]] = deque()  # the same, in that order
        self.lock = threading.Lock()
        self.feed = ListWatch("Jobs", client.BatchV1Api(kube).list_namespaced_job, namespace,
                              "", on_list=self._listed, on_event=self._event,
                              resync_due=lambda age: False)
        self.feed.start()
        self.feed.synced.wait(30)

    def _seen(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.added.setdefault(name, time.monotonic())
        if (obj.get("status") or {}).get("succeeded") and name not in self.done:
            self.done[name] = now = time.monotonic()
            self.finished.append((now, name))

    def _listed(self, items: list[dict[str, Any]], started: float) -> None:
        with self.lock:
            for obj in items:
                self._seen(obj)

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self._seen(obj)

    def close(self) -> None:
        self.feed.close()


def launch_rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def baseline(site: Site, kube: Any, meter: CpuMeter, *, cleanup: bool = False
             ) -> tuple[float, float, dict[str, float]]:
    """`cleanup`: each Job is deleted KEEP_SECONDS after it was seen complete (by the
    loop's writer threads, in the timed window), as the controller deletes its own."""
    from kubernetes import client

    batch = client.BatchV1Api(kube)
    settings = Settings(namespace=site.namespace, release="baseline",
                        runner_image="qforge-runner:test", pvc_name="qforge-jobs",
                        runner_pod_annotations={RUN_FOR: POD_LIFE},
                        runner_cpu=SMALL["RUNNER_CPU"], runner_memory=SMALL["RUNNER_MEMORY"])
    spec = JobSpec(molecule=parse_xyz(WATER))
    manifests = []
    for i in range(JOBS):
        m = build_job_manifest(f"base-{i:05d}", spec, settings)
        m["metadata"].pop("finalizers", None)  # (none without a TTL) nobody would take it off
        manifests.append(m)
    watch = Watch(kube, site.namespace)
    created = 0

    def delete_due(pool: ThreadPoolExecutor) -> None:
        """The Jobs whose keep time is over, oldest first: O(due), not O(completed)."""
        if not cleanup:
            return
        now, due = time.monotonic(), []
        with watch.lock:
            while watch.finished and now - watch.finished[0][0] >= KEEP_SECONDS:
                due.append(watch.finished.popleft()[1])
        for name in due:
            pool.submit(batch.delete_namespaced_job, name, site.namespace,
                        propagation_policy="Background", _preload_content=False)

    def all_done(pool: ThreadPoolExecutor) -> bool:
        delete_due(pool)
        with watch.lock:
            return len(watch.done) >= JOBS

    meter.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        for m in manifests:
            while True:
                with watch.lock:
                    done = len(watch.done)
                if created - done < CAP:
                    break
                delete_due(pool)
                time.sleep(0.01)
            pool.submit(batch.create_namespaced_job, site.namespace, m,
                        _preload_content=False)
            created += 1
        wait_until(lambda: all_done(pool), 1800, "the baseline's Jobs to complete")
        total = time.monotonic() - t0
    cpu = meter.spent()
    rate = launch_rate(list(watch.added.values()))
    watch.close()
    clear(kube, site.namespace)
    return total, rate, cpu


def clear(kube: Any, namespace: str) -> None:
    """Delete the baseline's Jobs and wait for their pods to go: the qforge run then
    meets the control plane (kwok, the Job controller, the scheduler) as the baseline
    did, not with 5,000 more Jobs and pods on it."""
    from kubernetes import client

    log(f"deleting the baseline's Jobs in {namespace}")
    client.BatchV1Api(kube).delete_collection_namespaced_job(
        namespace, propagation_policy="Background", _preload_content=False)
    pods_gone(kube, namespace)


def pods_gone(kube: Any, namespace: str) -> None:
    """Wait until the namespace's pods are deleted (a Job's pods go after it, in the
    background): the next phase must not pay for this one's garbage collection."""
    from kubernetes import client

    core = client.CoreV1Api(kube)

    def gone() -> bool:
        listed = json.loads(core.list_namespaced_pod(
            namespace, limit=1, _preload_content=False).data)
        return not listed.get("items")

    wait_until(gone, 900, f"the pods of {namespace} to be deleted")


HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process, in seconds (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / HZ


class CpuMeter:
    """CPU seconds spent by the control plane's processes and this bench process: on a
    saturated machine, what a phase costs decides how fast it goes."""

    def __init__(self, cluster: ControlPlane) -> None:
        self.pids = {d.name: d.pid for d in cluster.supervisor.daemons}
        self.pids["bench"] = os.getpid()
        self.started: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}

    def start(self) -> None:
        self.started = self._now()

    def spent(self) -> dict[str, float]:
        now = self._now()
        return {name: now[name] - self.started[name] for name in now}


def process_sampler(pid: int, peak: list[float], stop: threading.Event) -> None:
    """peak[0]: the process's peak RSS (kB); peak[1]: its CPU seconds, last seen."""
    while not stop.wait(0.5):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        m = re.search(r"VmHWM:\s+(\d+) kB", text)
        if m:
            peak[0] = max(peak[0], int(m.group(1)))
        peak[1] = cpu_seconds(pid) or peak[1]


def qforge_run(site: Site, kube: Any, meter: CpuMeter, *, pod_watch: bool = True
               ) -> tuple[float, float, dict[str, int], int, dict[str, float]]:
    job_ids = submit_direct(site, JOBS)
    watch = Watch(kube, site.namespace)
    before = set(watch.added)
    meter.start()
    t0 = time.monotonic()
    # Jobs deleted by the controller KEEP_SECONDS after their outcome is recorded: the
    # deletions fall inside the timed phase (the bare loop's come after it, at once)
    ctl = site.controller({RUN_FOR: POD_LIFE}, MAX_CONCURRENT_JOBS=str(CAP),
                          JOB_KEEP_SECONDS=str(KEEP_SECONDS),
                          KUBE_POD_WATCH=str(pod_watch).lower(), **SMALL)
    peak, stop = [0.0, 0.0], threading.Event()
    sampler = threading.Thread(target=process_sampler, args=(ctl.pid, peak, stop),
                               daemon=True)
    sampler.start()
    store = JobStore(site.jobs_dir)

    def all_completed() -> bool:
        return not store.queue.queued() and not store.queue.running_markers()

    wait_until(all_completed, 1800, "every qforge job to finish")
    total = time.monotonic() - t0
    cpu = meter.spent()
    states = {json.loads((site.jobs_dir / j / "metadata.json").read_text())["status"]
              for j in job_ids}
    assert states == {"COMPLETED"}, states
    stop.set()
    sampler.join(5)
    cpu["controller"] = peak[1]
    with watch.lock:
        rate = launch_rate([t for n, t in watch.added.items() if n not in before])
    watch.close()
    from kubernetes import client

    batch = client.BatchV1Api(kube)

    def all_deleted() -> bool:  # every Job deleted by the controller (its writes counted)
        return not json.loads(batch.list_namespaced_job(
            site.namespace, limit=1, _preload_content=False).data).get("items")

    wait_until(all_deleted, KEEP_SECONDS + 600, "the controller to delete every Job")
    pods_gone(kube, site.namespace)
    ctl.stop(timeout=60)
    requests = json.loads(re.findall(r"Kubernetes API requests made: (\{.*\})",
                                     ctl.log_text())[-1])
    return total, rate, requests, int(peak[0]), cpu


def finished_records(store: JobStore, count: int) -> None:
    """`count` COMPLETED records written straight to disk (what years of campaigns leave)."""
    spec = JobSpec(molecule=parse_xyz(WATER))
    now = utcnow()
    template = JobRecord(job_id="x", status=Status.COMPLETED, created_at=now,
                         updated_at=now, finished_at=now, created_ns=0, spec=spec)
    for i in range(count):
        job_id = f"old-{i:06d}"
        folder = store.layout.job_dir(job_id)
        folder.mkdir()
        (folder / "metadata.json").write_text(
            template.model_copy(update={"job_id": job_id}).model_dump_json())


def restart(site: Site, kube: Any) -> float:
    store = JobStore(site.jobs_dir)
    log(f"writing {RECORDS} finished records")
    finished_records(store, RECORDS)
    running = submit_direct(site, RUNNING)
    gone = {"POD_NAME": "qforge-old-pod", "POD_UID": "gone"}
    old = site.controller({RUN_FOR: "3600s"}, MAX_CONCURRENT_JOBS=str(RUNNING + 500),
                          **SMALL, **gone)
    wait_until(lambda: not store.queue.queued()
               and len(store.queue.running_markers()) == RUNNING, 600, f"{RUNNING} running Jobs")
    watch = Watch(kube, site.namespace)
    def all_seen() -> bool:
        with watch.lock:
            return len(watch.added) >= RUNNING

    wait_until(all_seen, 300, "every running Job seen")
    old.kill()
    queued = submit_direct(site, 20)
    names = {naming.job_name(j) for j in queued}
    t0 = time.monotonic()
    new = site.controller({RUN_FOR: "1s"}, MAX_CONCURRENT_JOBS=str(RUNNING + 500),
                          POD_NAME="qforge-new-pod", POD_UID="new", **SMALL)
    def seen() -> list[float]:
        with watch.lock:
            return [t for n, t in watch.added.items() if n in names]

    first = min(wait_until(seen, 120, "the first new Job")) - t0
    watch.close()
    new.kill()
    del running
    return first


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by hand: the cluster goes too
    tmp = Path(os.environ.get("BENCH_SCALE_DIR", f"/tmp/qforge-bench-scale-{os.getpid()}"))
    tmp.mkdir(parents=True, exist_ok=True)
    # the control plane tuned for batch throughput on a small machine (README, "Scale")
    options = ClusterOptions(name=f"bench-scale-{os.getpid()}", kwok_nodes=5,
                             node_pods="1000", node_cpu="1000", node_memory="4000Gi",
                             go_gc=400, priority_and_fairness=False)
    cluster = ControlPlane(options)
    cluster.start()
    try:
        kube = api_client(cluster)
        nodes = [f"kwok-node-{i}" for i in range(5)]
        with NodeLeases(kube, nodes):
            if os.environ.get("BENCH_SCALE_ONLY") == "restart":
                return restart_line(cluster, kube, tmp)
            meter = CpuMeter(cluster)
            runs: dict[str, list[Run]] = {phase: [] for phase in PHASES}
            for r in range(ROUNDS):
                order = PHASES[r % len(PHASES):] + PHASES[:r % len(PHASES)]
                for phase in order:
                    runs[phase].append(one_phase(cluster, kube, tmp, meter, phase, r))
            report(runs)
            return restart_line(cluster, kube, tmp)
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Run:
    """One phase of one round: time to all done, launch rate, CPU seconds by process, the
    controller's API requests and peak RSS (kB; none for the bare loop), load average."""

    total: float
    rate: float
    cpu: dict[str, float]
    requests: dict[str, int]
    peak_kb: int
    load: float

    def ms(self, name: str | None = None) -> float:
        """CPU ms per job: of every process, or of one."""
        spent = sum(self.cpu.values()) if name is None else self.cpu.get(name, 0.0)
        return 1000 * spent / JOBS


def one_phase(cluster: ControlPlane, kube: Any, tmp: Path, meter: CpuMeter, phase: str,
              r: int) -> Run:
    site = Site.create(cluster, tmp / f"{phase}-{r}", Results(tmp / "ref"), f"{phase}{r}")
    try:
        if phase in ("baseline", "cleanup"):
            log(f"round {r + 1}, {phase}: {JOBS} Jobs at cap {CAP}, a bare client loop"
                + (f" deleting each Job {KEEP_SECONDS} s after it completed"
                   if phase == "cleanup" else ""))
            total, rate, cpu = baseline(site, kube, meter, cleanup=phase == "cleanup")
            run = Run(total, rate, cpu, {}, 0, os.getloadavg()[1])
        else:
            log(f"round {r + 1}, qforge {phase}: {JOBS} jobs at cap {CAP}")
            total, rate, requests, peak_kb, cpu = qforge_run(site, kube, meter,
                                                             pod_watch=phase == "watch")
            run = Run(total, rate, cpu, requests, peak_kb, os.getloadavg()[1])
    finally:
        for ctl in site.controllers:
            ctl.stop()
    log(f"round {r + 1}, {phase}: {run.total:.1f} s, {run.rate:.1f} Jobs/s, "
        f"{run.ms():.1f} ms CPU a job")
    return run


def report(runs: dict[str, list[Run]]) -> None:
    """The bench: lines. Ratios are taken within each round (the bare loop's time over
    qforge's), then their median: the machine's pace drifts between rounds."""
    base, watch, nowatch = runs["baseline"], runs["watch"], runs["nowatch"]
    cleanup = runs["cleanup"]
    load = (f"(load average 5 min: baseline {median([x.load for x in base]):.1f}, qforge "
            f"{median([x.load for x in watch + nowatch]):.1f}; {ROUNDS} round(s), the "
            f"phases' order rotated each round)")

    def ratios(runs_: list[Run], against: list[Run] = base) -> list[float]:
        return [b.total / q.total for b, q in zip(against, runs_, strict=True)]

    def cpu_ratios(runs_: list[Run], against: list[Run] = base) -> list[float]:
        return [q.ms() / b.ms() for b, q in zip(against, runs_, strict=True)]

    def by_round(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    def med_ms(runs_: list[Run], name: str | None = None) -> float:
        return median([x.ms(name) for x in runs_])

    rate, base_rate = median([x.rate for x in watch]), median([x.rate for x in base])
    print(f"bench: scale launches {rate:.1f} Jobs/s sustained at cap {CAP} with {JOBS} "
          f"queued, bare loop {base_rate:.1f}/s (target >= 50/s): "
          f"{'met' if rate >= 50 else 'NOT met'} {load}")
    for name, runs_, what in (("watch", watch, "with its pod watch (KUBE_POD_WATCH=true)"),
                              ("nowatch", nowatch,
                               "without it (KUBE_POD_WATCH=false, the default)")):
        ratio, cpu = median(ratios(runs_)), median(cpu_ratios(runs_))
        print(f"bench: scale {JOBS} jobs to COMPLETED, qforge {what}: "
              f"{median([x.total for x in runs_]):.1f} s vs bare client loop "
              f"{median([x.total for x in base]):.1f} s: time ratio {ratio:.2f} (by round: "
              f"{by_round(ratios(runs_))}; target >= 0.95): "
              f"{'met' if ratio >= 0.95 else 'NOT met'}; CPU per job of every process "
              f"{med_ms(runs_):.1f} vs {med_ms(base):.1f} ms, {cpu:.2f}x the bare loop's "
              f"(by round: {by_round(cpu_ratios(runs_))}; target <= 1.1x): "
              f"{'met' if cpu <= 1.1 else 'NOT met'}; the controller "
              f"{med_ms(runs_, 'controller'):.1f} ms, kube-apiserver "
              f"{med_ms(runs_, 'kube-apiserver'):.1f} vs {med_ms(base, 'kube-apiserver'):.1f}"
              f" ms {load}")
        requests = runs_[0].requests
        per_job = sum(requests.values()) / JOBS
        writes = sum(v for k, v in requests.items()
                     if k.split()[0] in ("create", "patch", "delete")) / JOBS
        print(f"bench: scale API requests per job ({name}) {per_job:.2f}, writes per job "
              f"{writes:.2f} vs the bare loop's 2 (its create, and its deletion; target <= "
              f"2): {'met' if writes <= 2.005 else 'NOT met'} {json.dumps(requests)}")
    print(f"bench: scale the bare loop deleting each Job {KEEP_SECONDS} s after it "
          f"completed, as the controller does (its create and its deletion, both in the "
          f"timed window): {median([x.total for x in cleanup]):.1f} s vs "
          f"{median([x.total for x in base]):.1f} s without the deletions, CPU per job "
          f"{med_ms(cleanup):.1f} vs {med_ms(base):.1f} ms (kube-apiserver "
          f"{med_ms(cleanup, 'kube-apiserver'):.1f} vs {med_ms(base, 'kube-apiserver'):.1f}"
          f" ms) {load}")
    for runs_, what in ((watch, "with its pod watch"), (nowatch, "without it")):
        ratio, cpu = median(ratios(runs_, cleanup)), median(cpu_ratios(runs_, cleanup))
        print(f"bench: scale {JOBS} jobs to COMPLETED, qforge {what} vs the bare loop "
              f"that deletes its Jobs too: time ratio {ratio:.2f} (by round: "
              f"{by_round(ratios(runs_, cleanup))}; target >= 0.95): "
              f"{'met' if ratio >= 0.95 else 'NOT met'}; CPU per job of every process "
              f"{cpu:.2f}x the bare loop's (by round: {by_round(cpu_ratios(runs_, cleanup))};"
              f" target <= 1.1x): {'met' if cpu <= 1.1 else 'NOT met'} {load}")
    peak_kb = max(x.peak_kb for x in watch)
    print(f"bench: scale controller peak RSS {peak_kb / 1024:.0f} MB with {JOBS} runner Jobs "
          f"in its namespace (target < 300 MB): "
          f"{'met' if peak_kb < 300 * 1024 else 'NOT met'} {load}")
    saved = [w.ms() - n.ms() for w, n in zip(watch, nowatch, strict=True)]
    print(f"bench: scale the pod watch costs {median(saved):+.1f} ms of CPU a job, every "
          f"process (by round: {', '.join(f'{v:+.1f}' for v in saved)}); the controller "
          f"{med_ms(watch, 'controller') - med_ms(nowatch, 'controller'):+.1f} ms, "
          f"kube-apiserver "
          f"{med_ms(watch, 'kube-apiserver') - med_ms(nowatch, 'kube-apiserver'):+.1f} ms "
          f"{load}")


def restart_line(cluster: ControlPlane, kube: Any, tmp: Path) -> int:
    site = Site.create(cluster, tmp / "restart", Results(tmp / "ref"), "restart")
    try:
        first = restart(site, kube)
    finally:
        for ctl in site.controllers:
            ctl.kill()
    print(f"bench: scale restart to first launch {first:.1f} s with {RECORDS} "
          f"finished records and {RUNNING} running Jobs, Lease holder pod gone "
          f"(target <= 10 s): {'met' if first <= 10 else 'NOT met'} "
          f"(load average 5 min {os.getloadavg()[1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
