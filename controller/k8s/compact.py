"""What the controller keeps of a watched runner Job or pod: the fields it reads.

A runner Job as the API serves it is a few kB of JSON (its pod template, managedFields)
and several times that as Python objects; the controller reads a handful of fields.
The list-then-watch threads pass every listed or watched object through these, so a
namespace with thousands of runner Jobs and pods (finished ones stay for their TTL)
never sits in memory whole, not even during the safety-net LIST. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["compact_job", "compact_pod"]

_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
         "deletionTimestamp", "labels", "annotations", "finalizers", "ownerReferences")
_JOB_SPEC = ("completions", "parallelism", "backoffLimit", "activeDeadlineSeconds")


def _pick(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        return {}
    return {k: obj[k] for k in keys if k in obj}


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = _pick(obj.get("metadata"), _META)
    owners = meta.get("ownerReferences")
    if isinstance(owners, list):
        meta["ownerReferences"] = [_pick(o, ("kind", "name", "uid")) for o in owners]
    return meta


def compact_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A Job without its pod template and managedFields: metadata, the spec fields that
    decide its outcome, and its status."""
    return {"metadata": _meta(job), "spec": _pick(job.get("spec"), _JOB_SPEC),
            "status": job.get("status") or {}}


def compact_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A pod without managedFields and with only two things of its spec: the node it
    runs on, and its first container's requests (what an unschedulable pod asks for)."""
    spec = pod.get("spec")
    small: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        if spec.get("nodeName"):
            small["nodeName"] = spec["nodeName"]
        for container in spec.get("containers") or []:
            requests = (container.get("resources") or {}).get("requests")
            if requests:
                small["containers"] = [{"resources": {"requests": requests}}]
            break
    return {"metadata": _meta(pod), "spec": small, "status": pod.get("status") or {}}
