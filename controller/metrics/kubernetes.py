"""The controller's own metrics: runner pods by phase and by why they wait, requests to
the Kubernetes API by verb and code (and the launch errors among them), and whether this
controller leads.

Requests are counted at the kubernetes client's REST layer (`instrument`), so every call
the executor, the watches, the Lease elector or the Event poster makes is counted without
touching them (a watch is counted when it opens, its duration is the time to the first
byte). kopf's own requests go through aiohttp, not this client, and are not counted here.
Runner pods are counted from the controller's pod watch (`tee_list`, `tee_event`). A
controller without one (KUBE_POD_WATCH=false) sees only the pods it reads, those of the
Jobs that wait for a ready pod: it exports the waiting ones by reason (`ReadWaiting`,
what QforgeRunnersWaiting reads) and not the pods by phase (zeros would read as "none
running").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qforge.metrics import buckets
from qforge.metrics.process import ProcessMetrics
from qforge.podreason import pod_waiting_reason as pod_waiting_reason  # re-exported
from qforge.settings import Settings

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
# The names only this module exports (the worker has none of them).
NAMES = frozenset({
    "qforge_runner_pods", "qforge_runner_pods_waiting", "qforge_kubernetes_api_requests",
    "qforge_kubernetes_api_request_duration_seconds", "qforge_launch_errors",
    "qforge_controller_leader",
})
# Kubernetes' StatusReason for the HTTP codes the API server answers with.
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "AlreadyExists", 410: "Expired",
           413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
           504: "Timeout"}
NO_ANSWER = "none"


def classify(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request, as Kubernetes names them: get, list, watch, create,
    update, patch, delete, deletecollection; `jobs`, `pods`, `pods/log`, `leases`, ..."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    # /api/v1/... or /apis/<group>/<version>/...
    rest = segments[2:] if segments[:1] == ["api"] else segments[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource (not the namespace object itself)
    resource = rest[0] if rest else "unknown"
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    if method == "GET":
        watch = parse_qs(parts.query).get("watch", ["false"])[0].lower() in ("true", "1")
        verb = "watch" if watch else ("get" if named else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    return verb, resource


def reason_of(code: str) -> str:
    """A launch error's reason from the API's answer: Forbidden, Invalid, ..., NoAnswer."""
    if code == NO_ANSWER:
        return "NoAnswer"
    try:
        return REASONS.get(int(code), f"HTTP{int(code)}")
    except ValueError:
        return "Unknown"


class RunnerPods(Collector):
    """The runner pods the pod watch reported, by phase and waiting reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, tuple[str, str | None]] = {}

    def observe(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        with self._lock:
            if event_type == "DELETED":
                self._pods.pop(key, None)
            else:
                phase = str((pod.get("status") or {}).get("phase") or "Pending")
                self._pods[key] = (phase if phase in PHASES else "Unknown",
                                   pod_waiting_reason(pod))

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """A full listing of the runner pods: the gauges start again from it."""
        fresh = RunnerPods()
        for pod in pods:
            fresh.observe("ADDED", pod)
        with self._lock:
            self._pods = fresh._pods

    def tee_event(self, feed: Callable[[str, dict[str, Any]], None]
                  ) -> Callable[[str, dict[str, Any]], None]:
        """A pod watch's event callback that also feeds these gauges."""
        def both(kind: str, body: dict[str, Any]) -> None:
            self.observe(kind, body)
            feed(kind, body)
        return both

    def tee_list(self, feed: Callable[[list[dict[str, Any]], float], None]
                 ) -> Callable[[list[dict[str, Any]], float], None]:
        """A pod watch's listing callback that also feeds these gauges."""
        def both(bodies: list[dict[str, Any]], listed_at: float) -> None:
            self.replace(bodies)
            feed(bodies, listed_at)
        return both

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("qforge_runner_pods", "", labels=["phase"]),
                GaugeMetricFamily("qforge_runner_pods_waiting", "", labels=["reason"])]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            pods = list(self._pods.values())
        by_phase = GaugeMetricFamily(
            "qforge_runner_pods", "Runner pods in the cluster by phase.", labels=["phase"])
        for phase in PHASES:
            by_phase.add_metric([phase], sum(1 for p, _ in pods if p == phase))
        reasons: dict[str, int] = {}
        for _, reason in pods:
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + 1
        return [by_phase, _waiting(reasons, "")]


class ReadWaiting(Collector):
    """Without the pod watch: the waiting runner pods by reason, as the controller last
    read them (its tracked Jobs'), asked of `source` at each scrape."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] = dict

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("qforge_runner_pods_waiting", "", labels=["reason"])]

    def collect(self) -> Iterable[Metric]:
        return [_waiting(self.source(), ", as read for the Jobs without a ready pod "
                                        "(no pod watch)")]


def _waiting(reasons: Mapping[str, int], how: str) -> GaugeMetricFamily:
    """The runner-pods-waiting gauge from counts by reason (`how`: added to its help)."""
    waiting = GaugeMetricFamily(
        "qforge_runner_pods_waiting",
        f"Pending runner pods by why they wait (Unschedulable, ErrImagePull, ...){how}.",
        labels=["reason"])
    for reason, n in sorted(reasons.items()):
        waiting.add_metric([reason], n)
    return waiting


class KubernetesMetrics:
    def __init__(self, registry: CollectorRegistry, *, pods: bool = True) -> None:
        self.requests = Counter(
            "qforge_kubernetes_api_requests",
            "Requests of this controller to the Kubernetes API, by verb, resource and HTTP "
            "code (none: no answer).", ["verb", "resource", "code"], registry=registry)
        self.latency = Histogram(
            "qforge_kubernetes_api_request_duration_seconds",
            "Seconds a request to the Kubernetes API took.", ["verb", "resource"],
            buckets=buckets.API, registry=registry)
        self.launch_errors = Counter(
            "qforge_launch_errors",
            "Runner Jobs the API server refused or did not answer, by reason.", ["reason"],
            registry=registry)
        self.leader = Gauge(
            "qforge_controller_leader", "1 while this controller holds the Lease, else 0.",
            registry=registry)
        self.pods = RunnerPods()
        self.read_waiting = ReadWaiting()
        registry.register(self.pods if pods else self.read_waiting)

    def bind_leader(self, leading: Callable[[], bool]) -> None:
        self.leader.set_function(lambda: 1.0 if leading() else 0.0)

    def record(self, method: str, url: str, code: str, seconds: float) -> None:
        verb, resource = classify(method, url)
        self.requests.labels(verb, resource, code).inc()
        self.latency.labels(verb, resource).observe(seconds)
        if verb == "create" and resource == "jobs" and not code.startswith("2") \
                and code != "409":  # 409: the Job exists, i.e. it was launched
            self.launch_errors.labels(reason_of(code)).inc()

    def instrument(self, api_client: Any) -> Any:
        """Count every request `api_client` makes (wraps its REST client's `request`, the
        one path every generated API call takes). Returns the client."""
        from kubernetes.client.exceptions import ApiException

        rest = api_client.rest_client
        send = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            code = NO_ANSWER
            try:
                response = send(method, url, *args, **kwargs)
                code = str(getattr(response, "status", NO_ANSWER))
                return response
            except ApiException as exc:
                code = str(exc.status) if exc.status else NO_ANSWER
                raise
            finally:
                self.record(method, url, code, time.perf_counter() - began)

        rest.request = request
        return api_client


class ControllerMetrics(ProcessMetrics):
    """A controller's metrics: a process's, plus the Kubernetes ones."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "controller")
        self.kubernetes = KubernetesMetrics(self.registry, pods=settings.kube_pod_watch)
