"""Following a set of jobs (a group, or ids) to their end: `qforge wait`, `submit --wait`,
the server's event streams. A terminal status is final, so each poll reads only the
members not finished yet (and, for a group, lists its index for newcomers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from qforge.record import Status
from qforge.service.models import Progress
from qforge.store.jobstore import JobStore


class Watch:
    def __init__(self, store: JobStore, job_ids: list[str], group: str | None) -> None:
        self.store = store
        self.group = group
        self.final: dict[str, Status] = {}
        self.open: dict[str, Status] = {}
        if group is None:
            for job_id in job_ids:
                self.open[job_id] = store.read(job_id).status  # JobNotFound: exit 3
        self.poll()

    def poll(self) -> None:
        store = self.store
        if self.group is not None:
            ids = [i for i in store.groups.ids(self.group) if i not in self.final]
            states = store.groups.states(self.group, ids)
            current = {jid: st for jid, (st, _) in states.items()}
        else:
            current = {}
            for job_id in self.open:
                data = store.peek(job_id)
                try:
                    current[job_id] = Status(data["status"]) if data else self.open[job_id]
                except (KeyError, ValueError):
                    current[job_id] = self.open[job_id]
        for job_id, st in current.items():
            if st.terminal:
                self.final[job_id] = st
                self.open.pop(job_id, None)
            else:
                self.open[job_id] = st

    @property
    def done(self) -> bool:
        return not self.open

    def snapshot(self) -> Progress:
        counts = dict.fromkeys(Status, 0)
        for st in (*self.final.values(), *self.open.values()):
            counts[st] += 1
        failed = ({j: st for j, st in sorted(self.final.items()) if st is not Status.COMPLETED}
                  if self.done else {})
        return Progress(total=len(self.final) + len(self.open), counts=counts,
                        done=self.done, failed=list(failed), failed_status=failed)


def follow(watch: Watch, interval: float,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """A snapshot of the followed jobs every `interval` seconds, until all are done."""
    while True:
        snap = watch.snapshot()
        yield snap
        if snap.done:
            return
        sleep(interval)
        watch.poll()
