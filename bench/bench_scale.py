"""The controller at cluster scale: 5,000 jobs at cap 500 on kwok nodes.

On one test control plane (tests/kube: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok with 5 fake nodes of 1,000 pods each; pods live RUN_FOR):

1. baseline: a bare kubernetes-client loop creates the same 5,000 Jobs (the controller's
   own manifests, without its finalizer) keeping at most 500 unfinished, counted by its
   own watch, with as many writer threads as the controller; time until all complete;
   then its Jobs and pods are deleted (the qforge run meets the same empty cluster);
2. qforge: 5,000 jobs in the store, `qforge controller` at cap 500: Jobs created per
   second (sustained: first to last creation), time until all are COMPLETED in the store
   (ratio baseline/qforge, target >= 0.95), API requests per job (the controller's own
   count, once it has deleted every Job, BENCH_SCALE_KEEP_SECONDS after its outcome:
   target <= 2 writes, the bare loop's create and deletion), peak RSS of the controller
   process (target < 300 MB);
3. restart: the store gets 100,000 finished records; a controller with 500 running Jobs
   is SIGKILLed (its Lease names a pod that no longer exists); a new controller starts:
   seconds from its start to its first new Job (target <= 10 s).

Prints `bench:` lines. Heavy on 2 cores (~10 min): run by hand or by `make bench`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


class Watch:
    """Arrival time of every Job of the namespace, and which have succeeded: the
    controller's own list-then-watch (raw JSON, no client model objects, which would cost
    the bench process more CPU than the requests themselves)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        from kubernetes import client

        self.added: dict[str, float] = {}
        self.done: set[str] = set()
        self.lock = threading.Lock()
        self.feed = ListWatch("Jobs", client.BatchV1Api(kube).list_namespaced_job, namespace,
                              "", on_list=self._listed, on_event=self._event,
                              resync_due=lambda age: False)
        self.feed.start()
        self.feed.synced.wait(30)

    def _seen(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.added.setdefault(name, time.monotonic())
        if (obj.get("status") or {}).get("succeeded"):
            self.done.add(name)

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


def baseline(site: Site, kube: Any, meter: CpuMeter) -> tuple[float, float, dict[str, float]]:
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
    meter.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        for m in manifests:
            while True:
                with watch.lock:
                    done = len(watch.done)
                if created - done < CAP:
                    break
                time.sleep(0.01)
            pool.submit(batch.create_namespaced_job, site.namespace, m,
                        _preload_content=False)
            created += 1
    wait_until(lambda: len(watch.done) >= JOBS, 1800, "the baseline's Jobs to complete")
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
    core = client.CoreV1Api(kube)

    def gone() -> bool:
        listed = json.loads(core.list_namespaced_pod(
            namespace, limit=1, _preload_content=False).data)
        return not listed.get("items")

    wait_until(gone, 900, "the baseline's pods to be deleted")


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


def qforge_run(site: Site, kube: Any, meter: CpuMeter
               ) -> tuple[float, float, dict[str, int], int, dict[str, float]]:
    job_ids = submit_direct(site, JOBS)
    watch = Watch(kube, site.namespace)
    before = set(watch.added)
    meter.start()
    t0 = time.monotonic()
    # Jobs deleted by the controller KEEP_SECONDS after their outcome is recorded: the
    # deletions fall inside the timed phase (the bare loop's come after it, at once)
    ctl = site.controller({RUN_FOR: POD_LIFE}, MAX_CONCURRENT_JOBS=str(CAP),
                          JOB_KEEP_SECONDS=str(KEEP_SECONDS), **SMALL)
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
            base_site = Site.create(cluster, tmp / "base", Results(tmp / "ref"), "baseline")
            log(f"baseline: {JOBS} Jobs at cap {CAP}, a bare client loop")
            meter = CpuMeter(cluster)
            base_total, base_rate, base_cpu = baseline(base_site, kube, meter)
            base_load = os.getloadavg()[1]
            log(f"baseline: {base_total:.1f} s, {base_rate:.1f} Jobs/s")
            site = Site.create(cluster, tmp / "qforge", Results(tmp / "ref"), "qforge")
            log(f"qforge: {JOBS} jobs at cap {CAP}")
            total, rate, requests, peak_kb, cpu = qforge_run(site, kube, meter)
            load = f"(load average 5 min: baseline {base_load:.1f}, qforge " \
                   f"{os.getloadavg()[1]:.1f})"
            per_job = sum(requests.values()) / JOBS
            writes = sum(v for k, v in requests.items()
                         if k.split()[0] in ("create", "patch", "delete")) / JOBS
            ratio = base_total / total
            print(f"bench: scale launches {rate:.1f} Jobs/s sustained at cap {CAP} with "
                  f"{JOBS} queued, bare loop {base_rate:.1f}/s (target >= 50/s): "
                  f"{'met' if rate >= 50 else 'NOT met'} {load}")
            print(f"bench: scale {JOBS} jobs to COMPLETED {total:.1f} s vs bare client loop "
                  f"{base_total:.1f} s ({base_rate:.1f} Jobs/s): ratio {ratio:.2f} "
                  f"(target >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'} {load}")
            print(f"bench: scale API requests per job {per_job:.2f}, writes per job "
                  f"{writes:.2f} vs the bare loop's 2 (its create, and its deletion; "
                  f"target <= 2): {'met' if writes <= 2.005 else 'NOT met'} "
                  f"{json.dumps(requests)}")
            print(f"bench: scale controller peak RSS {peak_kb / 1024:.0f} MB with "
                  f"{JOBS} runner Jobs in its namespace (target < 300 MB): "
                  f"{'met' if peak_kb < 300 * 1024 else 'NOT met'} {load}")
            base_ms, ms = (1000 * sum(c.values()) / JOBS for c in (base_cpu, cpu))
            print(f"bench: scale CPU per job, the control plane's processes, the bench and "
                  f"the controller together: bare loop {base_ms:.1f} ms, qforge {ms:.1f} ms "
                  f"(the controller {1000 * cpu['controller'] / JOBS:.1f} ms; kube-apiserver "
                  f"{1000 * cpu['kube-apiserver'] / JOBS:.1f} vs "
                  f"{1000 * base_cpu['kube-apiserver'] / JOBS:.1f} ms): CPU ratio "
                  f"{base_ms / ms:.2f} beside the time ratio {ratio:.2f} (no target: on "
                  f"saturated cores the time follows the CPU) {load}")
            for ctl in base_site.controllers + site.controllers:
                ctl.stop()
            return restart_line(cluster, kube, tmp)
    finally:
        cluster.stop()


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
