"""Pods read when they are needed, for a controller without its pod watch.

With KUBE_POD_WATCH=false the controller follows its Jobs only. A success needs nothing
of the pod (the Job's status says it; result.json holds the rest), a failure reads the
failed Job's pods once (controller/k8s/executor.py, `_final_pod`). What is left is a
job that waits: a tracked Job whose status has counted no ready pod for
`POD_READ_AFTER` seconds since the watch first showed it (its pod unschedulable, its
image not pulled, ...). Its pods are read then, and again every `POD_READ_EVERY` seconds
while it waits, at most `POD_READS_PER_PASS` Jobs a scheduling pass: why it waits comes
to `qforge show`, and an unschedulable pod to the autoscaler's "no node fits" check;
once it has a ready pod, its pods are read one last time (the node it runs on).
Pure bookkeeping: the executor makes the reads.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from qforge.k8s.view import holds_slot

__all__ = [
    "POD_READS_PER_PASS",
    "POD_READ_AFTER",
    "POD_READ_EVERY",
    "PodReads",
    "waits_for_pod",
]

POD_READ_AFTER = 10.0
POD_READ_EVERY = 15.0
POD_READS_PER_PASS = 20


def waits_for_pod(job: Mapping[str, Any] | None) -> bool:
    """The Job holds its slot (controller/k8s/view.py) and its status counts no ready
    pod (none yet, or one that is Pending), nor a failure on its way (FailureTarget)."""
    if job is None or not holds_slot(job):
        return False
    status = job.get("status") or {}
    return int(status.get("ready") or 0) < 1 and not any(
        c.get("type") == "FailureTarget" and str(c.get("status")) == "True"
        for c in status.get("conditions") or [])


class PodReads:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}  # Job name -> when its pods were last read

    def due(self, waiting: Mapping[str, float], tracked: Collection[str],
            now: float) -> list[str]:
        """The Jobs whose pods to read now: those waiting longest first, and once more
        each Job read while it waited that waits no more (its pod started: its node, and
        no stale reason to wait). `waiting`: each waiting Job's name -> since when it has
        been shown without a ready pod; `tracked`: the names of every tracked Job."""
        started = [n for n in self._last if n not in waiting and n in tracked]
        self._last = {n: t for n, t in self._last.items() if n in waiting}
        due = [name for name, since in sorted(waiting.items(), key=lambda kv: kv[1])
               if now - since >= POD_READ_AFTER
               and (name not in self._last or now - self._last[name] >= POD_READ_EVERY)]
        due = due[:max(0, POD_READS_PER_PASS - len(started))]
        for name in due:
            self._last[name] = now
        return started + due
