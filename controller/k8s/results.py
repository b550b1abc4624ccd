"""The early look for result.json of the Jobs whose pod runs, in a thread of its own.

A job's result is in the store the moment its runner renames result.json into place
(last, after every other file). The pod's Succeeded phase comes 1-2 s later (the
kubelet notices the exit at its next relist, then reports). So the folders of Jobs
whose pod is on its node and has not ended are looked at (a short runner is over before
the kubelet reports the pod Running), a bounded number each time: a success found there
is that job's outcome at once (the slot is still counted until the Job's own status
frees it). Without the pod watch (KUBE_POD_WATCH=false) the Jobs looked at are those
whose own status counts an active pod.
"""

from __future__ import annotations

import logging
import threading

from qforge.k8s.phase import Phase, Signal
from qforge.k8s.tracker import Tracker
from qforge.store.jobstore import JobStore

log = logging.getLogger(__name__)

__all__ = ["RESULT_EVERY", "RESULT_LOOKS_PER_SECOND", "ResultLooks"]

# This often, and at most this many looks (a stat on the job store) a second in all,
# however many pods run.
RESULT_EVERY = 0.25
RESULT_LOOKS_PER_SECOND = 200
_LOOKED_AT = frozenset({Phase.LAUNCHING, Phase.CREATED, Phase.SEEN, Phase.UNFIT})


class ResultLooks:
    def __init__(self, store: JobStore, tracker: Tracker, *, pods_watched: bool = True
                 ) -> None:
        self.store = store
        self.tracker = tracker
        self.pods_watched = pods_watched
        self._next = 0  # round-robin offset
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="result-looks")
            self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed.wait(RESULT_EVERY):
            try:
                self.look()
            except Exception:  # never dies of one look
                log.exception("Looking for result.json failed")

    def look(self) -> int:
        """One round of looks; returns the looks made."""
        tracker = self.tracker
        with tracker.lock:
            running = [(t.job_id, t.name) for t in tracker.jobs.values()
                       if t.phase in _LOOKED_AT and self._runs(t.name)]
        if not running:
            return 0
        budget = max(1, int(RESULT_LOOKS_PER_SECOND * RESULT_EVERY))
        start = self._next % len(running)
        batch = (running[start:] + running[:start])[:budget]
        self._next = start + len(batch)
        found = [(job_id, name) for job_id, name in batch
                 if (self.store.layout.job_dir(job_id) / "result.json").exists()]
        if found:
            with tracker.lock:
                for job_id, name in found:
                    t = tracker.jobs.get(job_id)
                    if t is not None and t.name == name:
                        tracker.signal_locked(job_id, Signal.RESULT)
            tracker.poke()
        return len(batch)

    def _runs(self, name: str) -> bool:
        """Its pod is on a node and has not ended (from the pod watch), or, without
        one, the Job's own status counts an active pod (under the tracker's lock)."""
        if self.pods_watched:
            pod = self.tracker.pods.get(name)
            return pod is not None and pod.node is not None \
                and pod.phase in ("Pending", "Running")
        status = (self.tracker.view.body(name) or {}).get("status") or {}
        return int(status.get("active") or 0) >= 1
