"""Heartbeats of workers and controllers sharing a store, and who is dead.

Each scheduler instance rewrites `.qforge/workers/<instance>` every poll. Another
instance judges it dead when the file has not changed for `lease_seconds` *by the
observer's own monotonic clock* — the machines' wall clocks are never compared, so
clock skew between hosts sharing an NFS folder cannot kill a live worker.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.store.jobstore import JobStore
from runner_image.atomic import write_text_atomic
from runner_image.timestamps import utcnow

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    signature: tuple[int, int] | None
    since: float


class Liveness:
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
