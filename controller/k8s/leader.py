"""One controller acts at a time: a coordination.k8s.io/v1 Lease.

A controller acts only while it holds the Lease; it renews it every pass and a
standby takes it over when it has not been renewed for its duration. With the cap
counted from the Jobs in the cluster and claims made by rename in the store, two
controllers could never launch a job twice; the Lease also keeps them from both
filling the same free slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = coordination_api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.leading = False
        self.clock = clock
        self._renewed = -1e18  # our clock at the last successful write of the Lease

    def _body(self, transitions: int, acquired: datetime) -> dict[str, Any]:
        now = _now()
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
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
        if holder != self.identity and not expired:
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
