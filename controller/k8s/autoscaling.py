"""Living with a cluster autoscaler (Karpenter, the cluster-autoscaler). Pure functions
and one small, bounded reader of pod Events.

* Runner pods carry the annotations both autoscalers honour to never evict a running
  calculation to consolidate a node (`protection_annotations`).
* A runner pod that waits for a node says why in words (`unschedulable_reason`): a new
  node is needed, and which of its requests no node has room for.
* A runner pod whose requests fit no node the autoscaler can make is never placed:
  Karpenter says so in a `FailedScheduling` Event on the pod ("Failed to schedule pod,
  no instance type has enough resources, ..."; sigs.k8s.io/karpenter
  pkg/controllers/provisioning/scheduling/events.go and nodeclaim.go). `unfit_reason`
  reads that verdict; `UnfitPods` lists those Events at most once per interval, and
  only while some runner pod has been unschedulable for a while; such a job fails with
  `unfit_error` (resource_error).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from qforge_runner.result import ErrorType, JobError

__all__ = [
    "DO_NOT_DISRUPT",
    "EVENT_LIST_SECONDS",
    "EVENT_SELECTOR",
    "SAFE_TO_EVICT",
    "UNFIT_GRACE_SECONDS",
    "UnfitPods",
    "pending_since",
    "pod_requests",
    "protection_annotations",
    "unfit_error",
    "unfit_reason",
    "unschedulable_reason",
]

log = logging.getLogger(__name__)

# Karpenter: never disrupt (consolidate, drift, expire) a node while this pod runs.
DO_NOT_DISRUPT: Final = "karpenter.sh/do-not-disrupt"
# The cluster-autoscaler: never evict this pod to scale its node down.
SAFE_TO_EVICT: Final = "cluster-autoscaler.kubernetes.io/safe-to-evict"

# A pod unschedulable for less than this is simply being placed (the autoscaler batches
# pending pods for 1-10 s before it decides); its Events are not read before.
UNFIT_GRACE_SECONDS: Final = 10.0
# At most one LIST of the namespace's FailedScheduling pod Events per this many seconds.
EVENT_LIST_SECONDS: Final = 15.0
# The Events listed: the schedulers' verdicts on pods.
EVENT_SELECTOR: Final = "involvedObject.kind=Pod,reason=FailedScheduling"

KARPENTER_PREFIX: Final = "Failed to schedule pod, "
# Parts of a Karpenter verdict that may change by themselves (NodePool limits reached,
# capacity offerings, reservations): such a pod waits rather than fails.
_TRANSIENT: Final = ("limits", "offering", "reserv", "minValues", "Dynamic Resource")
_INSUFFICIENT = re.compile(r"Insufficient ([\w./-]*[\w/-])")


def protection_annotations(enabled: bool) -> dict[str, str]:
    """Annotations of a runner pod that keep autoscalers from evicting it to consolidate."""
    return {DO_NOT_DISRUPT: "true", SAFE_TO_EVICT: "false"} if enabled else {}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, str]:
    """The runner container's requests ({"cpu": "1", "memory": "1Gi"}), first container."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        return {str(k): str(v) for k, v in requests.items()}
    return {}


def _requests_text(requests: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(requests.items())) or "no requests"


def unschedulable_reason(message: str, requests: Mapping[str, str]) -> str:
    """Words for a pod the scheduler could not place (its PodScheduled condition's
    message, e.g. "0/3 nodes are available: 3 Insufficient cpu. preemption: ...")."""
    summary = message.split(" preemption:")[0].strip()
    wants = _requests_text(requests)
    if "no nodes available" in message or summary.startswith("0/0 nodes"):
        return (f"waiting for a new node: the cluster has no node for it yet (it requests "
                f"{wants}; an autoscaler adds one); kube-scheduler: Unschedulable: {summary}")
    short = sorted(set(_INSUFFICIENT.findall(summary)))
    if short:
        return (f"waiting for a new node: no node has enough free {' and '.join(short)} "
                f"for its requests ({wants}); kube-scheduler: Unschedulable: {summary}")
    return (f"waiting for a node: kube-scheduler: Unschedulable: "
            f"{summary or 'not scheduled yet'} ({wants})")


def _is_karpenter_verdict(event: Mapping[str, Any]) -> bool:
    return (event.get("reason") == "FailedScheduling"
            and str(event.get("message") or "").startswith(KARPENTER_PREFIX))


def unfit_reason(events: Iterable[Mapping[str, Any]]) -> str | None:
    """Karpenter's words when a pod's requests fit no instance type of any NodePool
    (the newest such Event of the pod), else None (the pod may still get a node)."""
    verdicts = [e for e in events if _is_karpenter_verdict(e)]
    if not verdicts:
        return None
    newest = max(verdicts, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")
                                            or ""))
    message = str(newest.get("message") or "")
    # the verdict's words, without the requirements and resources it lists after them
    words = re.sub(r"requirements=.*?resources=\{[^}]*\}", "", message)
    if "no instance type" not in words or "enough resources" not in words:
        return None
    if any(word in words for word in _TRANSIENT):
        return None
    return message.removeprefix(KARPENTER_PREFIX)


class UnfitPods:
    """Finds the runner pods no node the autoscaler can make will ever fit.

    API cost: nothing while no runner pod has been unschedulable for
    UNFIT_GRACE_SECONDS; then one LIST of the namespace's pod Events with reason
    FailedScheduling (EVENT_SELECTOR, a field selector: one event per pod and reporter,
    deduplicated by their reporters) at most every EVENT_LIST_SECONDS. Needs `list` on
    events.

    `due` (cheap, no I/O: the scheduling thread asks it) decides whether a LIST is due
    and books it; `check` makes it (the executor runs it in a writer thread), through
    `list_events`, which returns the listed Events as mappings."""

    def __init__(self, list_events: Callable[[], Iterable[Mapping[str, Any]]],
                 clock: Callable[[], float], *, grace: float = UNFIT_GRACE_SECONDS,
                 every: float = EVENT_LIST_SECONDS) -> None:
        self.list_events = list_events
        self.clock = clock
        self.grace = grace
        self.every = every
        self._listed_at: float | None = None
        self.lists = 0  # how many LISTs were made (the cost, for tests and logs)

    def due(self, pending_since: Mapping[str, float]) -> list[str]:
        """`pending_since`: pod name -> when it was first seen unschedulable (clock).
        The pods to check now (those unschedulable for `grace`), if a LIST is due (then
        it is booked: the next is due `every` seconds later); else []."""
        now = self.clock()
        pods = [pod for pod, since in pending_since.items() if now - since >= self.grace]
        if not pods or (self._listed_at is not None and now - self._listed_at < self.every):
            return []
        self._listed_at = now
        return pods

    def check(self, pods: Iterable[str]) -> dict[str, str]:
        """One LIST. Returns pod name -> Karpenter's reason, for those of `pods` whose
        requests fit no node the autoscaler can make."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as NoAnswer

        self.lists += 1
        try:
            listed = list(self.list_events())
        except (ApiException, OSError, NoAnswer) as exc:  # the next LIST tries again
            log.warning("Could not list the pods' FailedScheduling Events: %s",
                        getattr(exc, "reason", None) or exc)
            return {}
        by_pod: dict[str, list[Mapping[str, Any]]] = {}
        for event in listed:
            pod = str((event.get("involvedObject") or {}).get("name") or "")
            by_pod.setdefault(pod, []).append(event)
        out: dict[str, str] = {}
        for pod in pods:
            reason = unfit_reason(by_pod.get(pod, ()))
            if reason is not None:
                out[pod] = reason
        return out


def pending_since(since: float | None, unschedulable: bool, now: float) -> float | None:
    """When a runner pod became unschedulable (kept while it stays so), None once it is
    placed."""
    if not unschedulable:
        return None
    return now if since is None else since


def unfit_error(reason: str) -> JobError:
    """The job's error when its pod fits no node the autoscaler can make."""
    return JobError(type=ErrorType.resource_error, message=(
        "its requests fit no node the cluster autoscaler can make; submit with a "
        f"smaller --cpu or --memory (Karpenter: {reason})"))
