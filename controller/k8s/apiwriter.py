"""The Kubernetes executor's API door: every request it makes, counted and rate-limited.

One token bucket (KUBE_API_QPS / KUBE_API_BURST, controller/k8s/throttle.py) for every
request, one back-off that a 429, a 5xx or no answer sets (Retry-After, else doubling),
and a small pool of writer threads (KUBE_API_WRITERS) so the scheduling thread never
waits on the API. Raw answers (`_preload_content=False`) are read whole and their
connection handed back. What a request means for a job is the caller's part.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qforge.k8s import naming
from qforge.k8s.status import PodView, pod_view
from qforge.k8s.throttle import Backoff, TokenBucket, retry_after_seconds, transient
from qforge.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ApiWriter", "Submit", "api_message", "as_json"]

Submit = Callable[[Callable[[], None]], None]
# How many times a delete or a finalizer removal is tried before it is left for later.
ATTEMPTS = 5


class ApiWriter:
    def __init__(self, settings: Settings, batch_api: Any, core_api: Any, *,
                 clock: Callable[[], float] = time.monotonic,
                 submit: Submit | None = None) -> None:
        self.batch = batch_api
        self.core = core_api
        self.namespace = settings.namespace
        self.bucket = TokenBucket(settings.kube_api_qps, settings.kube_api_burst)
        self.backoff = Backoff(clock=clock)
        self.requests: Counter[str] = Counter()  # "verb resource" -> count
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        if submit is None:
            self._pool = ThreadPoolExecutor(settings.kube_api_writers,
                                            thread_name_prefix="api-writer")
            pool = self._pool

            def submit(task: Callable[[], None]) -> None:
                pool.submit(_logged, task)
        self.submit: Submit = submit

    @property
    def threaded(self) -> bool:
        """Writes run in writer threads (not inline, as under unit tests)."""
        return self._pool is not None

    def call(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request: counted, and through the token bucket."""
        self.bucket.acquire()
        with self._lock:
            self.requests[what] += 1
        result = call(*args, **kwargs)
        release = getattr(result, "release_conn", None)
        if release is not None:  # a raw answer: read it whole, hand the connection back
            _ = result.data  # (unread, it would keep its connection: a new TLS handshake
            release()  # for every request)
        return result

    # ------------------------------------------------------------- requests
    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return as_json(self.call("create jobs", self.batch.create_namespaced_job,
                                 self.namespace, manifest, _preload_content=False))

    def read_job(self, name: str) -> dict[str, Any]:
        return as_json(self.call("get jobs", self.batch.read_namespaced_job, name,
                                 self.namespace, _preload_content=False))

    def delete_job(self, name: str) -> bool:
        """Delete a Job (its pods in the background), trying again after a transient
        answer; whether it is gone (or going)."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(ATTEMPTS):
            try:
                self.call("delete jobs", self.batch.delete_namespaced_job, name,
                          self.namespace, propagation_policy="Background",
                          _preload_content=False)
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return True
                if not transient(exc.status) or attempt == ATTEMPTS - 1:
                    log.warning("Could not delete Job %s: %s", name, exc.reason)
                    return False
                time.sleep(self.backoff.failed(retry_after_seconds(exc.headers)))
        return False

    def remove_finalizer(self, name: str, body: dict[str, Any] | None,
                         forget: Callable[[], None]) -> None:
        """Take qforge's finalizer off the Job `name` (`body`: its last known state,
        None to read it). A JSON patch that tests the list first, so a list that moved
        under it is read afresh (`forget` drops the stale body) and tried again."""
        from kubernetes.client.exceptions import ApiException

        for _ in range(ATTEMPTS):
            try:
                if body is None:
                    body = self.read_job(name)
                finalizers = list((body.get("metadata") or {}).get("finalizers") or ())
                if naming.FINALIZER not in finalizers:
                    return
                index = finalizers.index(naming.FINALIZER)
                patch = [{"op": "test", "path": f"/metadata/finalizers/{index}",
                          "value": naming.FINALIZER},
                         {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
                self.call("patch jobs", self.batch.patch_namespaced_job, name,
                          self.namespace, patch, _preload_content=False)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if transient(exc.status):
                    time.sleep(self.backoff.failed(retry_after_seconds(exc.headers)))
                elif exc.status not in (409, 422):  # 409/422: the list moved under us
                    log.warning("Could not take the finalizer off Job %s: %s", name,
                                exc.reason)
                    return
                forget()
                body = None  # read it afresh
        log.warning("Gave up taking the finalizer off Job %s for now", name)

    def post_event(self, name: str, reason: str, body: dict[str, Any]) -> None:
        """Best effort: an Event that cannot be posted never fails a job."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        try:
            self.call("create events", self.core.create_namespaced_event, self.namespace,
                      body, _preload_content=False)
        except (ApiException, OSError, NoAnswer) as exc:
            log.warning("Could not post Event %s on Job %s: %s", reason, name,
                        getattr(exc, "reason", exc))

    def job_pods(self, name: str) -> list[PodView]:
        """The pods of the Job `name`, read from the API (ApiException passes)."""
        resp = self.call("list pods", self.core.list_namespaced_pod, self.namespace,
                         label_selector=f"batch.kubernetes.io/job-name={name}",
                         _preload_content=False)
        return [pod_view(p) for p in as_json(resp).get("items") or []]

    def pod_events(self, selector: str) -> list[dict[str, Any]]:
        resp = self.call("list events", self.core.list_namespaced_event, self.namespace,
                         field_selector=selector, _preload_content=False)
        return [e for e in as_json(resp).get("items") or [] if isinstance(e, dict)]

    def close(self) -> None:
        if self._pool is not None:
            # writes not started are dropped: a create's job is adopted (and created) by
            # the next controller, a finalizer is swept at its first listing
            self._pool.shutdown(wait=True, cancel_futures=True)


def _logged(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception:  # a writer thread never dies of one request
        log.exception("Kubernetes API write failed")


def as_json(resp: Any) -> dict[str, Any]:
    """The JSON body of an answer made with _preload_content=False (or a dict)."""
    if isinstance(resp, dict):
        return resp
    data = getattr(resp, "data", None)
    if data is None:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def api_message(exc: Any) -> str:
    """The `message` of the API server's Status body, else the raw body."""
    body = getattr(exc, "body", None) or ""
    try:
        return str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        return str(body)
