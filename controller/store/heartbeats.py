"""Heartbeats of workers and controllers sharing a store, and who is dead.

Each scheduler instance rewrites `.qforge/workers/<instance>` every poll. Another
instance judges it dead when the file has not changed for `lease_seconds` *by the
observer's own monotonic clock* — the machines' wall clocks are never compared, so
clock skew between hosts sharing an NFS folder cannot kill a live worker.

The instance name also says whether others may take its jobs back when it dies: a
local worker's jobs ran in its own process (another worker requeues them), a cluster
controller's run as runner Jobs in the cluster (only a controller, adopting them, may
act on them). The executor says which (`Executor.others_may_recover`); this module owns
how the name carries it, and every file of the workers folder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from qforge.store.jobstore import JobStore
from qforge_runner.atomic import write_text_atomic
from qforge_runner.timestamps import utcnow

log = logging.getLogger(__name__)

# The name of an instance whose jobs others must not recover starts with this.
_PINNED_PREFIX = "k8s."


def instance_name(base: str, *, others_may_recover: bool) -> str:
    """The heartbeat (and running-marker) name of an instance called `base`."""
    if others_may_recover or base.startswith(_PINNED_PREFIX):
        return base
    return f"{_PINNED_PREFIX}{base}"


def others_may_recover(instance: str) -> bool:
    """Whether another scheduler may take back the jobs of `instance` when it dies."""
    return not instance.startswith(_PINNED_PREFIX)


def beat_ages(store: JobStore, now: float) -> dict[str, float]:
    """Every instance with a heartbeat file and the seconds since its last beat, by the
    wall clock `now` (a hint for people; `Heartbeats.dead` never compares clocks)."""
    try:
        names = os.listdir(store.layout.workers)
    except FileNotFoundError:
        return {}
    ages: dict[str, float] = {}
    for name in names:
        try:
            ages[name] = now - (store.layout.workers / name).stat().st_mtime
        except FileNotFoundError:
            continue
    return ages


@dataclass
class _Seen:
    signature: tuple[int, int] | None
    since: float


class Heartbeats:
    """This instance's heartbeat, and the verdict on the others' (who is dead)."""

    def __init__(self, store: JobStore, instance: str, worker_id: str, lease_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.store = store
        self.instance = instance
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._beats = 0
        self._seen: dict[str, _Seen] = {}

    def beat(self, active_jobs: int) -> None:
        self._beats += 1
        info = {
            "instance": self.instance,
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "beat": self._beats,
            "at": utcnow(),
            "active_jobs": active_jobs,
        }
        path = self.store.layout.workers / self.instance
        try:
            write_text_atomic(path, json.dumps(info) + "\n")
        except OSError as exc:
            # A full store cannot take the new file, but the old one's mtime can still
            # move (no block needed): others must not judge this worker dead and run
            # its jobs a second time. Raises when even that fails (a read-only store).
            try:
                os.utime(path)
            except OSError:
                raise exc from None
            log.warning("Heartbeat of %s renewed by its mtime only: %s", self.instance,
                        exc.strerror or exc)

    def retire(self) -> None:
        """A clean exit: no heartbeat left behind."""
        (self.store.layout.workers / self.instance).unlink(missing_ok=True)

    def beating(self) -> set[str]:
        """The instances with a heartbeat file (alive or not)."""
        try:
            return set(os.listdir(self.store.layout.workers))
        except FileNotFoundError:
            return set()

    def forget(self, instance: str) -> None:
        """Remove a dead instance's heartbeat (it owns no job any more)."""
        (self.store.layout.workers / instance).unlink(missing_ok=True)

    def dead(self, instances: set[str]) -> set[str]:
        """Which of `instances` (other than ours) have not beaten for a lease."""
        now = self.clock()
        dead: set[str] = set()
        for inst in instances:
            if inst == self.instance:
                continue
            sig = self._signature(inst)
            seen = self._seen.get(inst)
            if seen is None or seen.signature != sig:
                self._seen[inst] = _Seen(sig, now)
                continue
            if now - seen.since >= self.lease_seconds:
                dead.add(inst)
        for inst in list(self._seen):
            if inst not in instances:
                del self._seen[inst]
        return dead

    def _signature(self, instance: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.store.layout.workers / instance)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)
