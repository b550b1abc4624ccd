"""An independent witness of a namespace's runner Jobs and pods that survives the API
server's and etcd's restarts.

One thread per kind (its own API client, nothing shared with the controller): a LIST,
then a WATCH from its resourceVersion. When the server ends a watch or the connection
breaks (the API server stopping, etcd gone), the watch is resumed from the last
resourceVersion seen, so no event is missed; only when that version cannot be resumed
(410 Gone, an ERROR event) is the kind listed again, and the listing merged as one
snapshot (what it no longer holds is gone), so no moment is counted that never existed.

After every event and every merge the invariants are evaluated on the whole state:
- Jobs: how many unfinished qforge Jobs (holds_a_slot) at once, the most ever;
- pods: no job with two pods Running at once (a deleted pod counts while it runs).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qforge.k8s import naming
from tests.cluster.helpers import holds_a_slot


@dataclass
class Overlap:
    job_id: str
    pods: tuple[str, ...]


@dataclass
class Follower:
    """List-then-watch of one kind, resumed across outages; `apply` gets the state."""

    kind: str
    api: Any  # the kubernetes-client API object list_call belongs to
    list_call: Callable[..., Any]
    namespace: str
    on_change: Callable[[dict[str, dict[str, Any]]], None]
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: int = 0
    resumes: int = 0
    outages: int = 0  # times the API server could not be reached
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        selector = naming.selector()
        rv: str | None = None
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    if rv is None:
                        rv = self._list(selector)
                        self.ready.set()
                    w = watch.Watch()
                    for event in w.stream(self.list_call, self.namespace,
                                          label_selector=selector, resource_version=rv,
                                          timeout_seconds=20, allow_watch_bookmarks=True,
                                          _request_timeout=(5, 35)):
                        obj = event["raw_object"]
                        if event["type"] == "ERROR":  # e.g. 410: too old to resume
                            rv = None
                            break
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._event(event["type"], obj)
                        if self.stop.is_set():
                            w.stop()
                    else:
                        self.resumes += 1  # the server ended it: resume from rv
                    failures = 0
                except ApiException as exc:
                    failures += 1
                    if exc.status == 410 or failures >= 5:
                        rv = None  # cannot resume from there: list again, then merge
                    else:  # 429, 5xx (etcd away): resume from rv
                        self.outages += 1
                    self.stop.wait(0.5)
                except (HTTPError, OSError):  # the API server is down or restarting
                    self.outages += 1
                    self.stop.wait(0.5)
        except BaseException as exc:  # reported through .error; the test checks it
            self.error = exc
            self.ready.set()

    def _list(self, selector: str) -> str:
        listed = self.api.api_client.sanitize_for_serialization(
            self.list_call(self.namespace, label_selector=selector, _request_timeout=30))
        snapshot = {i["metadata"]["name"]: i for i in listed.get("items") or []}
        with self.lock:
            self.state = snapshot  # one snapshot: what it lacks is gone
            self.lists += 1
            self.on_change(self.state)
        return str(listed["metadata"]["resourceVersion"])

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            if kind == "DELETED":
                self.state.pop(name, None)
            else:
                self.state[name] = obj
            self.on_change(self.state)


class Witness:
    """The Jobs' and pods' followers, and what they saw."""

    def __init__(self, api_client_factory: Callable[[], Any], namespace: str) -> None:
        from kubernetes import client

        self.max_unfinished = 0
        self.first_seen: dict[str, float] = {}  # Job name -> monotonic, first sight
        self.job_names: dict[str, set[str]] = defaultdict(set)  # job id -> Job names
        self.succeeded: dict[str, set[str]] = defaultdict(set)  # job id -> Job names
        self.pod_names: dict[str, set[str]] = defaultdict(set)  # job id -> pod names
        # pod name -> its container's exit code when first seen ended (Succeeded or
        # Failed): the end the Job controller acts on, whatever a later patch says
        self.pod_exit: dict[str, int | None] = {}
        self.overlaps: list[Overlap] = []
        self.running_pods: list[str] = []  # Running, not being deleted: deletable
        batch = client.BatchV1Api(api_client_factory())
        core = client.CoreV1Api(api_client_factory())
        self.jobs = Follower("jobs", batch, batch.list_namespaced_job, namespace,
                             self._jobs_changed)
        self.pods = Follower("pods", core, core.list_namespaced_pod, namespace,
                             self._pods_changed)
        self._threads = [threading.Thread(target=f.run, name=f"witness-{f.kind}",
                                          daemon=True) for f in (self.jobs, self.pods)]

    def __enter__(self) -> Witness:
        for t in self._threads:
            t.start()
        for f in (self.jobs, self.pods):
            if not f.ready.wait(60) or f.error is not None:
                raise AssertionError(f"the {f.kind} witness did not start: {f.error}")
        return self

    def __exit__(self, *_: object) -> None:
        for f in (self.jobs, self.pods):
            f.stop.set()
        for t in self._threads:
            t.join(timeout=40)

    def errors(self) -> list[str]:
        followers = (self.jobs, self.pods)
        return [f"{f.kind}: {f.error!r}" for f in followers if f.error is not None] + [
            f"{t.name} died" for t, f in zip(self._threads, followers, strict=True)
            if not t.is_alive() and not f.stop.is_set()]

    def job_ids_seen(self) -> int:
        with self.jobs.lock:
            return len(self.job_names)

    def job_names_now(self) -> set[str]:
        with self.jobs.lock:
            return set(self.first_seen)

    def deletion_outcome(self, pod: str, job_id: str) -> str | None:
        """How a pod deleted by hand ended, as far as the watches know yet:
        "interrupted" (it ended with an exit code other than 0, or its job got another
        pod), "finished" (it ended with exit code 0 first, or its job's Job succeeded with
        this pod alone: its lifetime ran out as it was deleted), or None (not known yet)."""
        with self.pods.lock:
            code = self.pod_exit.get(pod)  # None: not seen ended, or ended without one
            pods = len(self.pod_names.get(job_id, ()))
        if code is not None:
            return "interrupted" if code != 0 else "finished"
        if pods >= 2:
            return "interrupted"
        with self.jobs.lock:
            succeeded = bool(self.succeeded.get(job_id))
        return "finished" if succeeded else None

    # ------------------------------------------------------------ invariants
    def _jobs_changed(self, state: dict[str, dict[str, Any]]) -> None:
        now = time.monotonic()
        unfinished = 0
        for name, job in state.items():
            self.first_seen.setdefault(name, now)
            job_id = naming.job_id_from_metadata(job["metadata"]) or "?"
            self.job_names[job_id].add(name)
            if holds_a_slot(job):
                unfinished += 1
            elif _succeeded(job):
                self.succeeded[job_id].add(name)
        self.max_unfinished = max(self.max_unfinished, unfinished)

    def _pods_changed(self, state: dict[str, dict[str, Any]]) -> None:
        running: dict[str, list[str]] = defaultdict(list)
        deletable = []
        for name, pod in state.items():
            job_id = naming.job_id_from_metadata(pod["metadata"]) or "?"
            self.pod_names[job_id].add(name)
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and name not in self.pod_exit:
                self.pod_exit[name] = _exit_code(pod)
            if phase == "Running":
                running[job_id].append(name)
                if not pod["metadata"].get("deletionTimestamp"):
                    deletable.append(name)
        self.running_pods = sorted(deletable)
        for job_id, pods in running.items():
            if len(pods) > 1:
                self.overlaps.append(Overlap(job_id, tuple(sorted(pods))))


def _exit_code(pod: dict[str, Any]) -> int | None:
    """The first container's exit code of an ended pod (None when it has none)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if "exitCode" in terminated:
            return int(terminated["exitCode"])
    return None


def _succeeded(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    return int(status.get("succeeded") or 0) >= 1 or any(
        c.get("type") in ("Complete", "SuccessCriteriaMet") and c.get("status") == "True"
        for c in status.get("conditions") or [])
