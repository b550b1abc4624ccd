"""What the cluster tests share: a namespace with its job store, the controller as a real
process, the real CLI, watches on the API (bounded waits: tests/waiting.py).

Nothing here mocks the API: every object goes to the session's real control plane
(tests/kube), and kwok plays the runner pods' lives from their annotations.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from qforge.k8s import naming
from qforge_runner.atomic import write_text_atomic
from qforge_runner.result import ErrorType, JobError, RunReport
from qforge_runner.spec import JobSpec
from tests.kube import ControlPlane
from tests.kube.procs import free_port
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
RUNNER_IMAGE = "qforge-runner:test"
PVC_NAME = "qforge-jobs"
POLL_INTERVAL = "0.5"


# kwok reads a fake runner's fate from these pod annotations (tests/kube/kwok-stages.yaml).
RUN_FOR = "kwok.qforge.io/run-for"
RUN_FOR_MAX = "kwok.qforge.io/run-for-max"  # with RUN_FOR: a lifetime drawn between them
EXIT_CODE = "kwok.qforge.io/exit-code"
REASON = "kwok.qforge.io/reason"

def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


# ------------------------------------------------------------------------ results


class Results:
    """Honest runner output for kwok's fake pods: the real harness runs real xtb once per
    distinct spec; each job gets a copy of that report under its own id."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self._cache: dict[str, RunReport] = {}
        self._lock = threading.Lock()

    def success(self, spec: JobSpec) -> RunReport:
        from qforge_runner.harness import RunConfig, run_job

        key = spec.model_dump_json()
        with self._lock:
            if key not in self._cache:
                folder = self.scratch / f"xtb-{len(self._cache)}"
                report = run_job(folder, spec, RunConfig(scratch_root=self.scratch),
                                 job_id="reference")
                assert report.success, f"xtb failed on the reference run: {report.error}"
                self._cache[key] = report
            return self._cache[key]

    @staticmethod
    def input_error(message: str) -> RunReport:
        """What the runner writes (and then exits 1) when xtb rejects its input."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return RunReport(success=False, error=JobError(type=ErrorType.input_error,
                                                        message=message),
                         started_at=now, finished_at=now)


# ------------------------------------------------------------------------ the site


@dataclass
class Site:
    """One test's namespace (PodSecurity `restricted`) and its job store: a hostPath
    PersistentVolume bound to the claim the controller names in runner pods."""

    cluster: ControlPlane
    namespace: str
    jobs_dir: Path
    tmp: Path
    results: Results
    pv_name: str = ""
    controllers: list[Controller] = field(default_factory=list)

    @classmethod
    def create(cls, cluster: ControlPlane, tmp: Path, results: Results, prefix: str,
               *, claim: bool = True) -> Site:
        """The namespace and the store's PV; with `claim`, also the bound claim the
        controller's runner pods name (PVC_NAME). Without, bind_store() is the test's."""
        ns = unique_name(prefix)
        jobs = tmp / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        site = cls(cluster, ns, jobs, tmp, results, pv_name=f"{ns}-jobs")
        cluster.namespace(ns, labels={"pod-security.kubernetes.io/enforce": "restricted",
                                      "pod-security.kubernetes.io/enforce-version": "latest"})
        if claim:
            site.bind_store(PVC_NAME)
        return site

    def bind_store(self, claim: str, size: str = "1Gi", access: str = "ReadWriteMany",
                   create_claim: bool = True) -> None:
        """A hostPath PV on the job store, pre-bound to `claim` (created when asked)."""
        pv = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": self.pv_name, "labels": {"qforge.io/test": "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": [access],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(self.jobs_dir)},
                "claimRef": {"namespace": self.namespace, "name": claim},
            },
        }
        self.cluster.apply(pv)
        # The claim only once the PV controller has seen the volume, and pre-bound from
        # the volume's side only (claimRef): a claim naming its volume too, or coming
        # first, often waits for the binder's periodic resync (15 s) to be Bound.
        wait_until(lambda: self.cluster.kubectl_json("get", "pv", self.pv_name).get(
            "status", {}).get("phase") in ("Available", "Bound"), 30,
            f"volume {self.pv_name} Available")
        if create_claim:
            self.cluster.apply({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": self.namespace},
                "spec": {"accessModes": [access], "storageClassName": "",
                         "resources": {"requests": {"storage": size}}},
            })
            wait_until(lambda: self.kubectl_json("get", "pvc", claim)["status"].get("phase")
                       == "Bound", 30, f"claim {claim} Bound")

    def delete(self) -> None:
        self.release_finalizers()
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false",
                             check=False)
        self.cluster.kubectl("delete", "pv", self.pv_name, "--wait=false", check=False)

    def release_finalizers(self) -> int:
        """Take qforge's finalizer off the namespace's runner Jobs (what a controller
        does once it has recorded their outcomes; a test that stopped its controllers
        early leaves some), so that the namespace can go. Returns how many."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        batch = client.BatchV1Api(api_client(self.cluster))
        jobs = batch.api_client.sanitize_for_serialization(
            batch.list_namespaced_job(self.namespace)).get("items") or []
        released = 0
        for job in jobs:
            finalizers = job["metadata"].get("finalizers") or []
            if naming.FINALIZER not in finalizers:
                continue
            i = finalizers.index(naming.FINALIZER)
            with contextlib.suppress(ApiException):
                batch.patch_namespaced_job(
                    job["metadata"]["name"], self.namespace,
                    [{"op": "test", "path": f"/metadata/finalizers/{i}",
                      "value": naming.FINALIZER},
                     {"op": "remove", "path": f"/metadata/finalizers/{i}"}])
                released += 1
        return released

    # ------------------------------------------------------------------ kubectl
    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, "-n", self.namespace, check=check)

    def kubectl_json(self, *args: str) -> Any:
        return self.cluster.kubectl_json(*args, "-n", self.namespace)

    def k8s_jobs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """The qforge runner Jobs in the namespace (of one job, by its label)."""
        items: list[dict[str, Any]] = self.kubectl_json(
            "get", "jobs", "-l", naming.selector(job_id))["items"]
        return items

    def events_of(self, kind: str, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl_json(
            "get", "events", "--field-selector",
            f"involvedObject.kind={kind},involvedObject.name={name}")["items"]
        return items

    # ------------------------------------------------------------------ qforge CLI
    def env(self, **extra: str) -> dict[str, str]:
        env = self.cluster.env()
        env.update(JOBS_DIR=str(self.jobs_dir), NAMESPACE=self.namespace,
                   POLL_INTERVAL=POLL_INTERVAL, RUNNER_IMAGE=RUNNER_IMAGE,
                   PVC_NAME=PVC_NAME, HEALTH_CHECK_INTERVAL="5", PYTHONUNBUFFERED="1")
        env.pop("QFORGE_DEBUG", None)
        env.update(extra)
        return env

    def qforge(self, *args: str, stdin: str | None = None, check: bool = True,
               timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([PY, "-m", "qforge.cli.main", *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=self.env(**env), check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"qforge {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def submit(self, *options: str, molecule: str = WATER) -> str:
        # --force: every call is a job of its own, as the tests count them (the same
        # molecule is otherwise deduplicated into one job)
        out = self.qforge("submit", "-", "--json", "--force", *options, stdin=molecule)
        job_id = json.loads(out.stdout)["job_id"]
        assert isinstance(job_id, str)
        return job_id

    def record(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.jobs_dir / job_id / "metadata.json").read_text())
        return data

    def spec(self, job_id: str) -> JobSpec:
        return JobSpec.model_validate(self.record(job_id)["spec"])

    def status(self, job_id: str) -> str:
        try:
            return str(self.record(job_id)["status"])
        except (OSError, ValueError):
            return "?"

    def wait_terminal(self, job_ids: Iterable[str], timeout: float) -> dict[str, str]:
        ids = list(job_ids)

        def all_terminal() -> dict[str, str] | None:
            states = {j: self.status(j) for j in ids}
            done = all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in states.values())
            return states if done else None

        return wait_until(all_terminal, timeout, f"{len(ids)} job(s) terminal")

    def wait_status(self, job_id: str, status: str, timeout: float) -> dict[str, Any]:
        wait_until(lambda: self.status(job_id) == status, timeout, f"job {job_id} {status}")
        return self.record(job_id)

    def write_result(self, job_id: str, report: RunReport) -> None:
        """Play the runner: its result.json in the job's folder (atomically, like it)."""
        report = report.model_copy(update={"job_id": job_id})
        write_text_atomic(self.jobs_dir / job_id / "result.json",
                          report.model_dump_json(indent=2) + "\n")

    def submit_succeeding(self, *options: str, molecule: str = WATER) -> str:
        """Submit, then put the real harness's result for that spec in place before the
        fake pod completes."""
        job_id = self.submit(*options, molecule=molecule)
        self.write_result(job_id, self.results.success(self.spec(job_id)))
        return job_id

    def submit_many(self, count: int, *options: str) -> list[str]:
        """`count` succeeding jobs, submitted by concurrent CLI processes (each one's
        start-up dominates; four at a time keeps two cores busy)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(self.submit_succeeding, *options) for _ in range(count)]
            return [f.result() for f in futures]

    # ------------------------------------------------------------------ controller
    def controller(self, annotations: dict[str, str] | None = None,
                   **env: str) -> Controller:
        ctl = Controller(self, f"controller-{len(self.controllers) + 1}",
                         annotations or {}, env)
        self.controllers.append(ctl)
        ctl.start()
        return ctl

    def diagnostics(self) -> str:
        """What a person would look at when a test failed."""
        parts: list[str] = []
        for ctl in self.controllers:
            parts.append(f"===== {ctl.name} (pid {ctl.pid}) log {ctl.log_path}\n"
                         f"{ctl.log_text()[-20000:]}")
        for what in (("get", "jobs,pods,events,leases", "-o", "wide"),
                     ("describe", "jobs")):
            proc = self.kubectl(*what, check=False)
            parts.append(f"===== kubectl {' '.join(what)} -n {self.namespace}\n"
                         f"{proc.stdout}{proc.stderr}")
        for meta in sorted(self.jobs_dir.glob("*/metadata.json"))[:30]:
            with contextlib.suppress(OSError):
                parts.append(f"===== {meta}\n{meta.read_text()[:3000]}")
        return "\n".join(parts)


def namespace_prefix(test_name: str) -> str:
    """A test's name as the prefix of its namespace (DNS-label characters, 40 at most)."""
    return re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_"))[:40].strip("-")


def diagnostics_section(item: Any, report: Any,
                        extra: Callable[[Site], str] | None = None) -> None:
    """On a failed call, add the site's diagnostics (plus `extra`'s) to the test's
    report, for the tiers' `pytest_runtest_makereport` hooks."""
    site = getattr(item, "funcargs", {}).get("site")
    if not (report.failed and report.when == "call" and isinstance(site, Site)):
        return
    try:
        text = site.diagnostics() + (extra(site) if extra is not None else "")
    except Exception as exc:  # the report matters more than the diagnostics
        text = f"(could not gather diagnostics: {exc})"
    report.sections.append((f"diagnostics of namespace {site.namespace}", text))


def submit_direct(site: Site, count: int, owner: str | None = None) -> list[str]:
    """`count` water jobs written with the store's own submit (the CLI's start-up would
    dominate at this size), each with the real harness's result for its spec; owned by
    `owner` when given (else the store's default owner)."""
    from qforge.store.jobstore import JobStore
    from qforge_runner.molecule import parse_xyz

    store = JobStore(site.jobs_dir)
    spec = JobSpec(molecule=parse_xyz(WATER))
    report = site.results.success(spec)
    ids = []
    for _ in range(count):
        record = (store.submit(spec, input_text=WATER) if owner is None
                  else store.submit(spec, input_text=WATER, owner=owner))
        site.write_result(record.job_id, report)
        ids.append(record.job_id)
    return ids


# ------------------------------------------------------------------------ controller


class Controller:
    """`qforge controller` as a real process, logging to a file; stopped by its PID."""

    def __init__(self, site: Site, name: str, annotations: dict[str, str],
                 env: dict[str, str]) -> None:
        self.site = site
        self.name = name
        self.annotations = annotations
        self.extra_env = env
        self.port = free_port()
        self.log_path = site.tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def start(self) -> None:
        # With the pod watch unless a test says otherwise: kwok's pods run no runner to
        # report its node (the default, without it: test_pod_reads.py, the e2e tier).
        env = self.site.env(**{"KUBE_POD_WATCH": "true", **self.extra_env})
        if self.annotations:
            env["RUNNER_POD_ANNOTATIONS"] = json.dumps(self.annotations)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "qforge.cli.main", "controller", "--liveness", self.health_url],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> int | None:
        """HTTP status of the liveness endpoint (None: nothing answers)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return None

    def wait_leading(self, timeout: float = 60) -> None:
        wait_until(lambda: "Acquired the controller Lease" in self.log_text() or
                   self._died(), timeout, f"{self.name} to lead")
        self._died()

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                 f"{self.log_text()[-5000:]}")
        return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (kopf's clean shutdown), then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode


# How a refusal reads in the controller's log: the API server's reason ("Forbidden",
# "... is forbidden: User ..."), or its status as the client prints it ("(403)",
# "status 403", "HTTP 403") — never a bare 403, which a log line's milliseconds
# (",403") or a job id stamped at 14:03:10 ("140310") can hold.
_REFUSED = re.compile(r"forbidden|\(403\)|(?:status|code|HTTP)[ :=]*403\b", re.IGNORECASE)


def refusals(log: str) -> list[str]:
    """The lines of a controller log that tell of a request the API server refused
    (Forbidden, a 403 as a status: see `_REFUSED`)."""
    return [line for line in log.splitlines() if _REFUSED.search(line)]


# ------------------------------------------------------------------------ watches


def holds_a_slot(job: dict[str, Any]) -> bool:
    """A runner Job holds one of the cap's slots until its pod has ended, as the Job
    controller says it: it counts the pod succeeded, or sets SuccessCriteriaMet (since
    1.31 it does so as soon as the pod has succeeded, before `succeeded` is counted and
    before Complete), or the Job has a terminal condition. Read from the Job's own
    fields here rather than through the controller's code, so the cap is checked
    against Kubernetes, not against itself."""
    status = job.get("status") or {}
    if int(status.get("succeeded") or 0) >= 1:
        return False
    return not any(c.get("type") in ("Complete", "Failed", "SuccessCriteriaMet")
                   and c.get("status") == "True"
                   for c in status.get("conditions") or [])


def holds_a_slot_until_counted(job: dict[str, Any]) -> bool:
    """The stricter reading, for the record: until `succeeded` is counted or the Job is
    Complete or Failed (a Job between SuccessCriteriaMet and those still counts)."""
    status = job.get("status") or {}
    if int(status.get("succeeded") or 0) >= 1:
        return False
    return not any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in status.get("conditions") or [])


class ListWatch:
    """A kubernetes-client watch on the namespace's qforge objects of one kind ("jobs"
    or "pods"), in a thread: lists once, then watches from that resourceVersion (no
    gap), handing every object to `_apply(event type, object)` in order. A failure of
    the watch is kept in `error` for the test to assert on."""

    kind = ""  # "jobs" | "pods"

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._list = (client.BatchV1Api(api_client).list_namespaced_job
                      if self.kind == "jobs"
                      else client.CoreV1Api(api_client).list_namespaced_pod)
        self._api_client = api_client
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-watch",
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        wait_until(self._ready.is_set, 30, f"the {self.kind} watch to start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _apply(self, event: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        from kubernetes import watch

        selector = naming.selector()
        try:
            listed = self._api_client.sanitize_for_serialization(self._list(
                self.namespace, label_selector=selector))
            for item in listed.get("items") or []:
                self._apply("ADDED", item)
            rv = listed["metadata"]["resourceVersion"]
            self._ready.set()
            while not self._stop.is_set():
                w = watch.Watch()
                for event in w.stream(self._list, self.namespace,
                                      label_selector=selector, resource_version=rv,
                                      timeout_seconds=2, allow_watch_bookmarks=True):
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._apply(event["type"], obj)
                    if self._stop.is_set():
                        w.stop()
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
            self._ready.set()


class JobWatch(ListWatch):
    """The namespace's qforge Jobs: after every event, counts the unfinished ones;
    `max_unfinished` is the most it ever saw at once. `on_added` is called (in the
    watch thread) for each Job the first time it is seen."""

    kind = "jobs"

    def __init__(self, api_client: Any, namespace: str,
                 on_added: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(api_client, namespace)
        self.on_added = on_added
        self.jobs: dict[str, dict[str, Any]] = {}
        self.names_by_job_id: dict[str, set[str]] = {}
        self.max_unfinished = 0
        self.max_unfinished_until_counted = 0  # the stricter reading, printed by tests
        self.events = 0

    def unfinished(self) -> int:
        with self._lock:
            return sum(1 for j in self.jobs.values() if holds_a_slot(j))

    def seen(self) -> int:
        """Jobs seen so far (the controller deletes finished ones: not only those here)."""
        with self._lock:
            return sum(len(names) for names in self.names_by_job_id.values())

    def _apply(self, event: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            new = name not in self.jobs and event != "DELETED"
            if event == "DELETED":
                self.jobs.pop(name, None)
            else:
                self.jobs[name] = obj
                job_id = naming.job_id_from_metadata(obj["metadata"]) or "?"
                self.names_by_job_id.setdefault(job_id, set()).add(name)
            self.events += 1
            count = sum(1 for j in self.jobs.values() if holds_a_slot(j))
            self.max_unfinished = max(self.max_unfinished, count)
            strict = sum(1 for j in self.jobs.values() if holds_a_slot_until_counted(j))
            self.max_unfinished_until_counted = max(self.max_unfinished_until_counted,
                                                    strict)
        if new and self.on_added is not None:
            self.on_added(obj)


class PodWatch(ListWatch):
    """The namespace's runner pods, per owner (`owner_of`: job id -> owner): the pods
    alive (not yet Succeeded or Failed) and the most alive at once; `at_start`, the
    pods alive per owner each time a new pod appears (that pod included); `states`,
    each time those counts changed: how many pods had appeared by then, and the
    counts. Pods, not
    Jobs: the controller takes a job as ended when its pod has ended, a second or more
    before the Job controller counts it in the Job's status (controller/k8s/status.py),
    so counting Jobs would count ended work."""

    kind = "pods"

    def __init__(self, api_client: Any, namespace: str, owner_of: dict[str, str]) -> None:
        super().__init__(api_client, namespace)
        self.owner_of = owner_of
        self.alive: dict[str, str] = {}  # pod name -> owner
        self.pods_by_job_id: dict[str, set[str]] = {}
        self.max_by_owner: Counter[str] = Counter()
        self.at_start: list[Counter[str]] = []  # in the order the pods appeared
        self.start_owners: list[str] = []  # the owner of each new pod, in that order
        self.states: list[tuple[int, Counter[str]]] = []

    def _apply(self, event: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        job_id = naming.job_id_from_metadata(obj["metadata"]) or "?"
        with self._lock:
            seen = job_id in self.pods_by_job_id and name in self.pods_by_job_id[job_id]
            self.pods_by_job_id.setdefault(job_id, set()).add(name)
            ended = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if event == "DELETED" or ended:
                self.alive.pop(name, None)
            else:
                self.alive[name] = self.owner_of.get(job_id, "?")
            alive = Counter(self.alive.values())
            for owner, n in alive.items():
                self.max_by_owner[owner] = max(self.max_by_owner[owner], n)
            if not seen and name in self.alive:
                self.at_start.append(alive)
                self.start_owners.append(self.alive[name])
            if not self.states or self.states[-1][1] != alive:
                self.states.append((len(self.at_start), alive))

    def starts(self) -> int:
        with self._lock:
            return len(self.at_start)


def api_client(cluster: ControlPlane) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


class NodeLeases:
    """Keeps a coordination.k8s.io Lease per kwok node renewed, in a thread.

    Works around the test cluster as tests/kube starts it: kwok there keeps no node
    Lease and posts node status only about once a minute, so the node lifecycle
    controller sees every node NotReady for a few seconds every ~55 s and marks the pods
    on them NotReady for good (kwok never makes a pod Ready again). Runner Jobs do not
    care (they go by phase); a Deployment does: a chart's controller pod caught by such a
    moment never becomes available and `helm install --wait` times out. The node
    lifecycle controller takes a renewed node Lease as the node's heartbeat.
    """

    HOLDER = "qforge-tests"

    def __init__(self, api_client: Any, nodes: list[str], every: float = 10.0) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.nodes = nodes
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-leases", daemon=True)

    def __enter__(self) -> NodeLeases:
        self.renew()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # the next round tries again
                self.renew()

    def renew(self) -> None:
        from kubernetes.client.exceptions import ApiException

        moment = datetime.now(UTC)
        # a MicroTime: the client re-serialises it, dropping a zero fraction the API
        # server insists on
        now = moment.replace(microsecond=moment.microsecond or 1).isoformat()
        for node in self.nodes:
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.HOLDER, "leaseDurationSeconds": 40,
                         "renewTime": now}}
            try:
                lease = self.api.read_namespaced_lease(node, "kube-node-lease")
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.api.create_namespaced_lease("kube-node-lease", body)
                continue
            if lease.spec.holder_identity not in (None, self.HOLDER):
                continue  # someone (kwok itself) keeps this node's Lease: leave it
            body["metadata"]["resourceVersion"] = lease.metadata.resource_version
            self.api.replace_namespaced_lease(node, "kube-node-lease", body)

