"""Benchmark e: water through the whole product on a real node vs the runner image alone.

Starts the real-node cluster of tests/kube on this machine (cluster "bench"; one real
node per machine, so it waits for another suite's node to go), builds both images from
the repo's Dockerfiles (docker's cache makes this quick when warm), imports them into
the node's containerd, gives the chart a hostPath PersistentVolume and installs it with
`helm install qforge charts/qforge` (only image names, storage settings,
maxConcurrentJobs and runner.resources.cpu set) into a namespace enforcing Pod Security
"restricted", as tests/e2e does. Runner pods get --runner-cpu (500m): with whole cores a
2-CPU node holds one runner beside the controller's 100m request, so no cap above 1
could ever be reached and both sides would only measure the node. Everything is torn
down at the end, whatever happens.

  latency     submit -> COMPLETED of water: `kubectl exec -i deploy/qforge -- qforge
              submit - --json`, then the job's metadata.json read on the host's
              PersistentVolume folder every 0.1 s until COMPLETED; vs
              `ctr -n k8s.io run --rm` of the runner image on a folder holding the same
              spec (as the image's user 10001, with the pod's CPU and 1Gi). Median of
              --runs each; ratio and absolute overhead. And the target of issue 10:
              the median vs the runner pod's own lifetime (created, seen by the
              bench's own pod watch -> the runner's end, from result.json; the pod's
              whole-second stamps beside it) + 1.5 s, with the median of each stage:
              in store (kubectl exec of the submit), store to Job, Job to pod, pod to
              runner start, runner end to recorded, recorded to seen, and the
              kubelet's runner end to pod ended for comparison.
  throughput  --jobs water jobs at cap --cap: all submitted through `kubectl exec`, timed
              from the first submit to the last COMPLETED; vs a shell loop creating the
              same Jobs (qforge.k8s.manifests.build_job_manifest with the chart's
              own settings, read from its ConfigMap) with `kubectl create`, waiting while
              --cap are unfinished, then until all finished. The controller keeps
              running (the same node, the same free CPU); the loop's Jobs carry another
              managed-by label, so it neither sees nor counts them. Ratio = loop time /
              qforge time; target >= 0.9.

Prints two `bench:` lines on stdout (progress on stderr). Needs root and the pinned
Kubernetes binaries (`make k8s-tools`); without them it prints a `bench:` line saying
it was skipped. Knobs: --runs/BENCH_E2E_RUNS (10), --jobs/BENCH_E2E_JOBS (30),
--cap/BENCH_E2E_CAP (3), --runner-cpu/BENCH_E2E_RUNNER_CPU (500m),
--wait-node/BENCH_E2E_WAIT_NODE seconds (1800).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import MOLECULES, env_int, log, median

from qforge.k8s import naming
from qforge.k8s.manifests import build_job_manifest
from qforge.record import Status
from qforge.settings import Settings
from qforge.spec import JobSpec

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.kube and tests.e2e

TARGET = 0.9
CLUSTER = "bench"
NAMESPACE = "qforge-bench"
RELEASE = DEPLOY = "qforge"
PVC = "qforge-jobs"
PV = "qforge-bench-store"
RUNNER_UID = 10001
BASE_LABEL = "qforge.io/bench"
BASE_MANAGED_BY = "qforge-bench-loop"  # not the controller's: it ignores these Jobs
BASE_SUBDIR = "bench-baseline"
WATER = MOLECULES["water"]
TERMINAL = {Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value}


class BenchError(RuntimeError):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- cluster


class Bench:
    def __init__(self, cluster: Any, kubectl: str, helm: str) -> None:
        self.cluster = cluster
        self.kubectl_bin = kubectl
        self.helm_bin = helm
        self.store = Path(cluster.run_dir) / "job-store"
        self.ctr_ids: list[str] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        env["PATH"] = os.pathsep.join([str(self.cluster.bin_dir), env.get("PATH", "")])
        return env

    def run(
        self, argv: list[str], input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout,
            env=self.env(), check=False,
        )
        if check and proc.returncode != 0:
            raise BenchError(
                f"{' '.join(argv[:6])} ... exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-1500:]}"
            )
        return proc

    def k(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_bin, "-n", NAMESPACE, *args], **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([self.helm_bin, *args], **kw)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run([self.kubectl_bin, "apply", "-f", "-"], input=json.dumps(manifest))

    # ------------------------------------------------------------------ setup
    def install(self, runner: str, controller: str, cap: int, runner_cpu: str) -> None:
        from tests.kube.volumes import node_volume

        self.apply({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }},
        })
        self.store.mkdir(parents=True, exist_ok=True)
        os.chown(self.store, RUNNER_UID, RUNNER_UID)
        self.store.chmod(0o2775)
        self.apply(node_volume(PV, self.store, self.cluster.node_name, claim=(NAMESPACE, PVC)))
        sets: list[str] = ["--set", "persistence.storageClass=-",
                           "--set", f"maxConcurrentJobs={cap}",
                           "--set-string", f"runner.resources.cpu={runner_cpu}"]
        for key, ref in (("runner", runner), ("controller", controller)):
            repo, _, tag = ref.rpartition(":")
            sets += ["--set", f"{key}.image.repository={repo}", "--set", f"{key}.image.tag={tag}"]
        self.helm("install", RELEASE, str(REPO / "charts" / "qforge"), "-n", NAMESPACE, *sets,
                  "--wait", "--timeout", "5m", timeout=400)
        self.k("rollout", "status", f"deploy/{DEPLOY}", "--timeout=180s", timeout=200)

    def teardown(self) -> None:
        for cid in self.ctr_ids:  # a `ctr run --rm` interrupted midway
            self.cluster.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
            self.cluster.ctr("containers", "rm", cid, check=False)
        self.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m",
                  check=False, timeout=180)
        self.run([self.kubectl_bin, "delete", "namespace", NAMESPACE, "--wait=true",
                  "--timeout=120s"], check=False, timeout=180)
        self.run([self.kubectl_bin, "delete", "pv", PV, "--wait=false"], check=False)

    # ------------------------------------------------------------------ qforge
    def submit(self, xyz: str) -> str:
        # --force: each submit is a job (the same water is otherwise deduplicated)
        out = self.k("exec", "-i", f"deploy/{DEPLOY}", "--", "qforge", "submit", "-", "--json",
                     "--force", input=xyz).stdout
        return str(json.loads(out)["job_id"])

    def status(self, job_id: str) -> str | None:
        try:
            data = json.loads((self.store / job_id / "metadata.json").read_text())
        except (OSError, ValueError):
            return None
        return str(data.get("status"))

    def wait_all(self, job_ids: list[str], timeout: float) -> None:
        pending = set(job_ids)
        deadline = time.monotonic() + timeout
        while pending:
            for job_id in list(pending):
                status = self.status(job_id)
                if status in TERMINAL:
                    if status != Status.COMPLETED.value:
                        raise BenchError(f"job {job_id} ended {status}")
                    pending.discard(job_id)
            if pending:
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(pending)} jobs not COMPLETED after {timeout:.0f}s")
                time.sleep(0.1)

    def qforge_latency(self, seen: Seen | None = None) -> tuple[float, dict[str, float]]:
        """Seconds from submit to COMPLETED seen on the store, and where they went
        (stages on the host clock: the node is this machine)."""
        t0, wall0 = time.monotonic(), time.time()
        job_id = self.submit(WATER)
        self.wait_all([job_id], timeout=300)
        total = time.monotonic() - t0
        return total, self.stages(job_id, wall0, wall0 + total, seen)

    def stages(self, job_id: str, submitted: float, observed: float,
               seen: Seen | None) -> dict[str, float]:
        record = json.loads((self.store / job_id / "metadata.json").read_text())
        report = json.loads((self.store / job_id / "result.json").read_text())
        name = str((record.get("placement") or {}).get("k8s_job") or "")
        deadline = time.monotonic() + 60
        while True:  # COMPLETED can come before the kubelet has reported the pod ended
            pod = json.loads(self.k("get", "pods", "-l",
                                    f"batch.kubernetes.io/job-name={name}",
                                    "-o", "json").stdout)["items"][0]
            statuses = pod["status"].get("containerStatuses") or [{}]
            term = (statuses[0].get("state") or {}).get("terminated")
            if term:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"pod of {name} not ended 60 s after COMPLETED")
            time.sleep(0.2)
        out = {"total": observed - submitted,
               "in store": _stamp(record["created_at"]) - submitted,
               "runner ran": _stamp(report["finished_at"]) - _stamp(report["started_at"]),
               "recorded to seen": observed - _stamp(record["finished_at"])}
        # the pod's own timestamps (whole seconds): created -> container finished
        out["pod life (stamps)"] = (_stamp(term["finishedAt"])
                                    - _stamp(pod["metadata"]["creationTimestamp"]))
        if seen is not None:
            deadline = time.monotonic() + 5  # the watch's event may trail kubectl's read
            while seen.first(name, "pod ended") is None and time.monotonic() < deadline:
                time.sleep(0.1)
            job_at = seen.first(name, "job")
            pod_at = seen.first(name, "pod")
            ended = seen.first(name, "pod ended")
            if job_at is not None and pod_at is not None:
                out["store to Job"] = job_at - _stamp(record["created_at"])
                out["Job to pod"] = pod_at - job_at
                out["pod to runner start"] = _stamp(report["started_at"]) - pod_at
                # the pod's lifetime at sub-second grain: created (seen by a watch a
                # few ms later) -> the runner's own end (its container exits then)
                out["pod life"] = _stamp(report["finished_at"]) - pod_at
            out["runner end to recorded"] = (_stamp(record["finished_at"])
                                             - _stamp(report["finished_at"]))
            if ended is not None:  # the kubelet's report, for comparison
                out["runner end to pod ended"] = ended - _stamp(report["finished_at"])
        return out

    def qforge_throughput(self, count: int) -> float:
        t0 = time.monotonic()
        ids = [self.submit(WATER) for _ in range(count)]
        self.wait_all(ids, timeout=120 + 30 * count)
        return time.monotonic() - t0

    # ------------------------------------------------------------------ baselines
    def ctr_image(self, runner: str) -> str:
        refs = self.cluster.ctr("images", "ls", "-q").stdout.split()
        for ref in refs:
            if ref == runner or ref.endswith("/" + runner):
                return ref
        raise BenchError(f"{runner} is not in the node's containerd (have: {refs})")

    def ctr_latency(self, image: str, spec: JobSpec, index: int, cpus: float) -> float:
        folder = Path(self.cluster.run_dir) / "bench-ctr" / f"{os.getpid()}-run{index}"
        folder.mkdir(parents=True)
        job_id = f"ctr-{os.getpid()}-{index}"
        (folder / "metadata.json").write_text(
            json.dumps({"job_id": job_id, "spec": spec.model_dump(mode="json")}))
        os.chown(folder, RUNNER_UID, RUNNER_UID)
        os.chown(folder / "metadata.json", RUNNER_UID, RUNNER_UID)
        cid = f"qforge-bench-{os.getpid()}-run{index}"  # containerd: [A-Za-z0-9._-]
        self.ctr_ids.append(cid)
        env = {"OMP_NUM_THREADS": "1", "HOME": "/tmp", "TMPDIR": "/tmp",
               "QFORGE_SCRATCH": "/tmp", "QFORGE_JOB_ID": job_id,
               "PYTHONDONTWRITEBYTECODE": "1"}
        # the image's USER is 10001:10001; the limits a runner pod has (its CPU, 1Gi)
        argv = ["run", "--rm", "--cpus", f"{cpus:g}", "--memory-limit", str(1 << 30),
                "--mount", f"type=bind,src={folder},dst=/job,options=rbind:rw"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        t0 = time.monotonic()
        self.cluster.ctr(*argv, image, cid, "qforge-runner", "/job", timeout=300)
        took = time.monotonic() - t0
        self.ctr_ids.remove(cid)
        result = json.loads((folder / "result.json").read_text())
        if not result.get("success"):
            raise BenchError(f"ctr run {index}: the runner failed: {result.get('error')}")
        return took

    def loop_throughput(self, spec: JobSpec, count: int, cap: int) -> float:
        """The same Jobs as the controller makes, created by a shell loop at cap."""
        config = self.k("get", "configmap", DEPLOY, "-o", "json").stdout
        data = dict(json.loads(config).get("data") or {})
        settings = Settings.from_env(data, namespace=NAMESPACE, pvc_sub_path=BASE_SUBDIR)
        root = self.store / BASE_SUBDIR
        root.mkdir(exist_ok=True)
        os.chown(root, RUNNER_UID, RUNNER_UID)
        manifests = Path(self.cluster.run_dir) / "bench-manifests"
        manifests.mkdir(exist_ok=True)
        files = []
        for i in range(count):
            job_id = f"base-{os.getpid()}-{i:03d}"
            folder = root / job_id
            folder.mkdir()
            (folder / "metadata.json").write_text(
                json.dumps({"job_id": job_id, "spec": spec.model_dump(mode="json")}))
            os.chown(folder, RUNNER_UID, RUNNER_UID)
            os.chown(folder / "metadata.json", RUNNER_UID, RUNNER_UID)
            job = build_job_manifest(job_id, spec, settings)
            for labels in (job["metadata"]["labels"],
                           job["spec"]["template"]["metadata"]["labels"]):
                labels[BASE_LABEL] = "baseline"
                labels[naming.LABEL_MANAGED_BY] = BASE_MANAGED_BY
            path = manifests / f"{i:03d}.json"
            path.write_text(json.dumps(job))
            files.append(str(path))
        kubectl = shlex.quote(self.kubectl_bin)
        unfinished = (
            f"{kubectl} -n {NAMESPACE} get jobs -l {BASE_LABEL}=baseline -o "
            "jsonpath='{range .items[*]}{.status.succeeded}{.status.failed}{\"\\n\"}{end}' "
            "| grep -c '^$'"
        )
        script = (
            "set -u\n"
            f"for f in {' '.join(shlex.quote(f) for f in files)}; do\n"
            f"  while [ \"$({unfinished})\" -ge {cap} ]; do sleep 0.5; done\n"
            f"  {kubectl} create -f \"$f\" >/dev/null || exit 1\n"
            "done\n"
            f"while [ \"$({unfinished})\" -gt 0 ]; do sleep 0.5; done\n"
        )
        t0 = time.monotonic()
        self.run(["bash", "-c", script], timeout=120 + 30 * count)
        took = time.monotonic() - t0
        for i in range(count):
            job_id = f"base-{os.getpid()}-{i:03d}"
            result = json.loads((root / job_id / "result.json").read_text())
            if not result.get("success"):
                raise BenchError(f"baseline Job {job_id} failed: {result.get('error')}")
        return took


def _stamp(text: str) -> float:
    """An RFC 3339 / ISO-8601 UTC timestamp (with or without fractions) in epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Seen:
    """When this machine first saw each runner Job, its pod, and its pod ended: two
    watches (the bench's own, beside the controller's), host clock."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.times: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True)
                        for kind in ("job", "pod")]
        for t in self.threads:
            t.start()

    def first(self, name: str, what: str) -> float | None:
        with self.lock:
            return self.times.get((name, what))

    def _note(self, name: str, what: str) -> None:
        with self.lock:
            self.times.setdefault((name, what), time.time())

    def _run(self, kind: str) -> None:
        from kubernetes import client, watch

        call = (client.BatchV1Api(self.api).list_namespaced_job if kind == "job"
                else client.CoreV1Api(self.api).list_namespaced_pod)
        while not self.stop.is_set():
            try:
                for event in watch.Watch().stream(call, NAMESPACE, timeout_seconds=5,
                                                  label_selector=naming.LABEL_MANAGED_BY):
                    obj = event["raw_object"]
                    meta = obj.get("metadata") or {}
                    if kind == "job":
                        self._note(str(meta.get("name")), "job")
                        continue
                    job = (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
                    if not job:
                        continue
                    self._note(str(job), "pod")
                    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        self._note(str(job), "pod ended")
            except Exception as exc:  # a broken watch: start again
                log(f"bench watch of {kind}s: {exc}")
                self.stop.wait(0.5)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def _cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "500m") in cores, for `ctr run --cpus`."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=env_int("BENCH_E2E_RUNS", 10))
    parser.add_argument("--jobs", type=int, default=env_int("BENCH_E2E_JOBS", 30))
    parser.add_argument("--cap", type=int, default=env_int("BENCH_E2E_CAP", 3))
    parser.add_argument("--runner-cpu",
                        default=os.environ.get("BENCH_E2E_RUNNER_CPU") or "500m")
    parser.add_argument("--wait-node", type=float,
                        default=env_int("BENCH_E2E_WAIT_NODE", 1800))
    args = parser.parse_args()

    from tests.kube.tools import KubeToolsError, find_tools

    if os.geteuid() != 0:
        print("bench: e2e skipped (the real node needs root)")
        return 0
    try:
        tools = find_tools()
    except KubeToolsError as exc:
        print(f"bench: e2e skipped ({exc})")
        return 0

    from tests.e2e.conftest import images
    from tests.e2e.images import E2EDocker, add_site_ca
    from tests.kube.images import dockerfile_base_tags
    from tests.kube.node import NodeCluster, node_options

    signal.signal(signal.SIGTERM, _interrupt)
    cluster = NodeCluster(node_options(CLUSTER), tools)
    cluster.docker = E2EDocker(cluster.log_dir)
    cluster.docker.supervisor = cluster.supervisor
    runner, controller = images()
    spec = JobSpec(molecule=WATER)
    failed = True
    t0 = time.monotonic()
    bench: Bench | None = None
    try:
        # one real node per machine: wait for another's to go
        cluster.start_when_free(args.wait_node, on_wait=lambda why: log(
            f"waiting for the machine's real node ({why})"))
        log(f"node cluster up ({time.monotonic() - t0:.0f}s since start)")
        t1 = time.monotonic()
        add_site_ca(cluster.docker, dockerfile_base_tags(), cluster.log_dir / "images.log")
        cluster.build_image(REPO, runner, dockerfile=REPO / "Dockerfile.runner")
        cluster.build_image(REPO, controller, dockerfile=REPO / "Dockerfile.controller")
        log(f"images built and loaded in {time.monotonic() - t1:.0f}s")
        bench = Bench(cluster, str(tools["kubectl"]), str(tools["helm"]))
        t1 = time.monotonic()
        bench.install(runner, controller, args.cap, args.runner_cpu)
        log(f"helm install --wait took {time.monotonic() - t1:.0f}s")

        image = bench.ctr_image(runner)
        cpus = _cores(args.runner_cpu)
        bench.ctr_latency(image, spec, 0, cpus)  # warm-up (not counted)
        seen = Seen(str(cluster.kubeconfig))
        bench.qforge_latency(seen)
        ctr_times, qf_times = [], []
        stages: dict[str, list[float]] = {}
        for i in range(args.runs):  # alternate, so load elsewhere hits both alike
            ctr_times.append(bench.ctr_latency(image, spec, i + 1, cpus))
            took, parts = bench.qforge_latency(seen)
            qf_times.append(took)
            for key, value in parts.items():
                stages.setdefault(key, []).append(value)
            log(f"latency {i + 1}/{args.runs}: qforge {took:.2f}s, "
                f"ctr run {ctr_times[-1]:.2f}s; " + ", ".join(
                    f"{k} {v:.2f}" for k, v in parts.items()))
        seen.close()
        qf_lat, ctr_lat = median(qf_times), median(ctr_times)
        life_key = "pod life" if "pod life" in stages else "pod life (stamps)"
        life = median(stages[life_key])
        breakdown = "; ".join(f"{k} {median(v):.2f}" for k, v in stages.items()
                              if k != "total")
        lat_verdict = "met" if qf_lat <= life + 1.5 else "NOT met"
        print(
            f"bench: e2e latency water submit->COMPLETED median of {args.runs} "
            f"{qf_lat:.2f} s vs the runner pod's own lifetime {life:.2f} s "
            f"(+{qf_lat - life:.2f} s; target <= +1.5 s): {lat_verdict}; "
            f"medians: {breakdown} (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )

        qf_tp = bench.qforge_throughput(args.jobs)
        log(f"throughput: qforge {args.jobs} jobs in {qf_tp:.1f}s")
        loop_tp = bench.loop_throughput(spec, args.jobs, args.cap)
        log(f"throughput: kubectl loop {args.jobs} jobs in {loop_tp:.1f}s")
        ratio = loop_tp / qf_tp
        verdict = "met" if ratio >= TARGET else "missed"
        print(
            f"bench: e2e water on a real node: submit->COMPLETED median of {args.runs} "
            f"{qf_lat:.2f} s vs ctr run of the runner image {ctr_lat:.2f} s "
            f"(ratio {qf_lat / ctr_lat:.2f}, +{qf_lat - ctr_lat:.2f} s); "
            f"{args.jobs} jobs at cap {args.cap} (runner cpu {args.runner_cpu}): "
            f"qforge {qf_tp:.1f} s "
            f"({args.jobs / qf_tp:.2f} jobs/s) vs kubectl loop {loop_tp:.1f} s "
            f"({args.jobs / loop_tp:.2f} jobs/s), throughput ratio {ratio:.2f} "
            f"(target >= {TARGET}: {verdict})",
            flush=True,
        )
        failed = False
    finally:
        t1 = time.monotonic()
        if bench is not None:
            bench.teardown()
        cluster.stop(keep_logs=failed)
        log(f"torn down in {time.monotonic() - t1:.0f}s"
            + (f"; logs kept in {cluster.log_dir}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
