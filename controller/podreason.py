"""Why a Pending pod does not run yet, as one Kubernetes reason word: what the runner-pod
gauges count (qforge.metrics.kubernetes), from the pod watch or from the pods a
controller without it reads (qforge.k8s.status). Pure: a pod's JSON in, a word out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pod_waiting_reason(pod: Mapping[str, Any]) -> str | None:
    """Why a Pending runner pod does not run yet, as one Kubernetes reason word:
    a container's waiting reason (ContainerCreating, ErrImagePull, ImagePullBackOff,
    CreateContainerConfigError, ...), else the PodScheduled condition's (Unschedulable,
    SchedulingGated), else Scheduling (not placed yet) or Pending. None when not Pending."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for cs in status.get("containerStatuses") or []:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            return str(reason)[:63]
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and str(cond.get("status")) != "True":
            return str(cond.get("reason") or "Unschedulable")[:63]
    return "Scheduling" if not (pod.get("spec") or {}).get("nodeName") else "Pending"
