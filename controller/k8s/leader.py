"""One controller acts at a time: a coordination.k8s.io/v1 Lease.

A controller acts only while it holds the Lease; it renews it every pass and a
standby takes it over when it has not been renewed for its duration. With the cap
counted from the Jobs in the cluster and claims made by rename in the store, two
controllers could never launch a job twice; the Lease also keeps them from both
filling the same free slot.

A Lease taken by a controller running in a pod names that pod (annotations): a standby
that finds the Lease held by a pod that no longer exists (deleted, or replaced by one
of the same name with another uid) takes it at once instead of waiting out its
duration, so a controller whose pod is gone is replaced in seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

ANNOTATION_HOLDER_POD = "qforge.io/holder-pod"
ANNOTATION_HOLDER_UID = "qforge.io/holder-pod-uid"


def _now() -> datetime:
    # Never a whole second: the kubernetes client re-serialises the Lease's MicroTimes
    # with isoformat(), which drops a zero fraction, and the API server then rejects
    # the write (it wants exactly six digits).
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond or 1)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime | None:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaseElector:
    def __init__(self, coordination_api: Any, namespace: str, name: str, identity: str,
                 duration_seconds: int = 15,
                 clock: Callable[[], float] = time.monotonic,
                 pod: tuple[str, str] | None = None, core_api: Any = None) -> None:
        self.api = coordination_api
        self.core = core_api
        self.pod = pod  # (name, uid) of this controller's own pod, when in one
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.leading = False
        self.clock = clock
        self._renewed = -1e18  # our clock at the last successful write of the Lease

    def _body(self, transitions: int, acquired: datetime) -> dict[str, Any]:
        now = _now()
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.pod is not None:
            metadata["annotations"] = {ANNOTATION_HOLDER_POD: self.pod[0],
                                       ANNOTATION_HOLDER_UID: self.pod[1]}
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": _fmt(acquired),
                "renewTime": _fmt(now),
                "leaseTransitions": transitions,
            },
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while this controller leads. Conflicts mean someone else
        wrote first: we are not the leader this round.

        The leader writes the Lease only once a third of its duration has passed since
        its last renewal (a pass may run many times a second): nobody can take a Lease
        before it has gone a whole duration without renewal, so skipping the call in
        between loses nothing, and saves an API read and write per pass."""
        from kubernetes.client.exceptions import ApiException

        if self.leading and self.clock() - self._renewed < self.duration / 3:
            return True

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            started = self.clock()
            try:
                self.api.create_namespaced_lease(self.namespace, self._body(0, _now()))
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return self._set(False)
                raise
            self._renewed = started
            return self._set(True)
        spec = lease.spec
        holder = spec.holder_identity
        renew = _parse(spec.renew_time)
        duration = spec.lease_duration_seconds or self.duration
        expired = renew is None or _now() - renew > timedelta(seconds=duration)
        if holder != self.identity and not expired and not self._holder_gone(lease):
            return self._set(False)
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = _parse(spec.acquire_time) if holder == self.identity else _now()
        body = self._body(transitions, acquired or _now())
        body["metadata"]["resourceVersion"] = lease.metadata.resource_version
        started = self.clock()
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return self._set(False)
            raise
        self._renewed = started
        return self._set(True)

    def _holder_gone(self, lease: Any) -> bool:
        """Whether the Lease names its holder's pod and that pod no longer exists."""
        from kubernetes.client.exceptions import ApiException

        annotations = getattr(lease.metadata, "annotations", None) or {}
        pod, uid = annotations.get(ANNOTATION_HOLDER_POD), annotations.get(
            ANNOTATION_HOLDER_UID)
        if not pod or not uid or self.core is None or not lease.spec.holder_identity:
            return False
        try:
            found = self.core.read_namespaced_pod(pod, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                return False
            log.info("The controller Lease %s is held by pod %s, which is gone: taking it",
                     self.name, pod)
            return True
        if found.metadata.uid != uid:
            log.info("The controller Lease %s is held by an earlier pod %s: taking it",
                     self.name, pod)
            return True
        return False

    def release(self) -> None:
        if not self.leading:
            return
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("Could not release the Lease %s: %s", self.name, exc.reason)
        self.leading = False

    def _set(self, leading: bool) -> bool:
        if leading != self.leading:
            log.info("%s the controller Lease %s/%s as %s",
                     "Acquired" if leading else "Lost", self.namespace, self.name,
                     self.identity)
        self.leading = leading
        return leading
