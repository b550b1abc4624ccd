"""The watch-fed tracker: each claimed job's runner Job, its phase, and its pod.

Fed by the two list-then-watch threads (controller/k8s/watch.py: `jobs_listed`,
`job_event`, `pods_listed`, `pod_event`) and by the executor's own answers (`signal`).
Holds the release's Job view (controller/k8s/view.py: what the cap counts), the tracked
jobs by id and by Job name, the pods of the Jobs that matter, which tracked jobs
changed since their last verdict (`dirty`), and the untracked Jobs whose finalizer is
still on (`sweep`). Everything behind one lock, none of it I/O.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from qforge.k8s import autoscaling
from qforge.k8s.phase import SHOWN, Phase, Signal, Tracked
from qforge.k8s.podreads import waits_for_pod
from qforge.k8s.status import PodView, latest_pod, pod_view
from qforge.k8s.view import JobState, JobView

__all__ = ["Tracker"]


class Tracker:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 poke: Callable[[], None] = lambda: None, owner_deletes: bool = True) -> None:
        self.lock = threading.Lock()
        # the bodies of tracked Jobs are kept until their verdict, finished or not
        self.view = JobView(keep=lambda name: name in self.by_name)
        # the controller deletes its finished Jobs (no TTL): an untracked finished Job
        # is one to clean up once its outcome is recorded
        self.owner_deletes = owner_deletes
        self.synced = threading.Event()
        self.jobs: dict[str, Tracked] = {}  # job id -> tracked
        self.by_name: dict[str, str] = {}  # Job name -> job id, of tracked jobs
        self.pods: dict[str, PodView] = {}  # Job name -> its pod, for Jobs that matter
        self.dirty: set[str] = set()  # tracked job ids changed since their last verdict
        self.sweep: set[str] = set()  # untracked Jobs still carrying the finalizer
        self.releasing: set[str] = set()  # Jobs whose finalizer is being taken off
        self._clock = clock
        self._poke = poke

    def poke(self) -> None:
        """Wake the scheduler: something changed."""
        self._poke()

    # ------------------------------------------------- the executor's side
    def track(self, t: Tracked) -> None:
        """Track a job (under the lock)."""
        self.jobs[t.job_id] = t
        self.by_name[t.name] = t.job_id
        self.dirty.add(t.job_id)

    def untrack(self, job_id: str) -> None:
        """Stop tracking a job (under the lock)."""
        t = self.jobs.pop(job_id, None)
        if t is not None:
            self.by_name.pop(t.name, None)
        self.dirty.discard(job_id)

    def signal(self, job_id: str, signal: Signal, *, poke: bool = False) -> Tracked | None:
        """Something happened to a tracked job: advance its phase, mark it for a
        verdict. Takes the lock."""
        with self.lock:
            t = self.signal_locked(job_id, signal)
        if poke:
            self.poke()
        return t

    def signal_locked(self, job_id: str | None, signal: Signal) -> Tracked | None:
        """`signal`, with the lock held."""
        t = self.jobs.get(job_id) if job_id else None
        if t is not None:
            t.signal(signal)
            if signal is Signal.SEEN and t.shown_at is None:
                t.shown_at = self._clock()
            self.dirty.add(t.job_id)
        return t

    def take_dirty(self) -> list[Tracked]:
        """The tracked jobs changed since their last verdict (under the lock)."""
        items = [self.jobs[j] for j in self.dirty if j in self.jobs]
        self.dirty.clear()
        return items

    def clear(self) -> None:
        with self.lock:
            self.jobs.clear()
            self.by_name.clear()
            self.dirty.clear()
            self.sweep.clear()
            self.releasing.clear()

    # ----------------------------------------------------------- job feed
    def jobs_listed(self, bodies: list[dict[str, Any]], listed_at: float) -> None:
        """A full listing of the release's Jobs (at start, after a broken watch, and as
        the safety net): the view starts again from it."""
        with self.lock:
            for name in self.view.replace(bodies, listed_at):
                self._job_gone(name)
            for t in self.jobs.values():
                if self.view.state(t.name) is not None:
                    self.signal_locked(t.job_id, Signal.SEEN)
                elif t.phase in SHOWN and not self.view.pending(t.name):
                    self.signal_locked(t.job_id, Signal.GONE)
            self.sweep = {n for n, s in self.view.states()
                          if n not in self.by_name and self._to_clean(s)}
            self.releasing = {n for n in self.releasing  # those gone are done
                              if self.view.state(n) is not None or self.view.pending(n)}
        self.synced.set()
        self.poke()

    def observe_job(self, body: dict[str, Any]) -> None:
        self.job_event("MODIFIED", body)

    def job_deleted(self, body: dict[str, Any]) -> None:
        self.job_event("DELETED", body)

    def job_event(self, kind: str, body: dict[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name") or "")
        with self.lock:
            before = self.view.state(name)
            state = self.view.apply(kind, body)
            # a slot freed (its Job's pod ended, or it is gone): refill it at once
            poke = before is not None and before.holding and (state is None
                                                              or not state.holding)
            job_id = self.by_name.get(name)
            if state is None:
                poke = self._job_gone(name) or poke
            elif job_id is not None:
                self.signal_locked(job_id, Signal.SEEN)
                poke = poke or not state.holding or state.deleting
            elif self._to_clean(state) and name not in self.releasing:
                self.sweep.add(name)
        if poke:
            self.poke()

    def _to_clean(self, state: JobState) -> bool:
        """An untracked Job that may need cleaning up once its outcome is recorded: it
        carries the finalizer and is finished or being deleted, or (the controller being
        its deleter) it is finished."""
        if state.finalizer:
            return not state.holding or state.deleting
        return self.owner_deletes and not state.holding and not state.deleting

    def _job_gone(self, name: str) -> bool:
        self.pods.pop(name, None)
        self.releasing.discard(name)  # its clean-up is over
        return self.signal_locked(self.by_name.get(name), Signal.GONE) is not None

    # ----------------------------------------------------------- pod feed
    def pods_listed(self, bodies: list[dict[str, Any]], listed_at: float) -> None:
        del listed_at
        with self.lock:
            self.pods.clear()
            for body in bodies:
                self._pod_event("ADDED", body)

    def observe_pod(self, body: dict[str, Any]) -> None:
        self.pod_event("MODIFIED", body)

    def pod_event(self, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            poke = self._pod_event(kind, body)
        if poke:
            self.poke()

    def _pod_event(self, kind: str, body: dict[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        owners = [o.get("name") for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "Job"]
        labels = meta.get("labels") or {}
        job = (owners[0] if owners else None) or labels.get(
            "batch.kubernetes.io/job-name") or labels.get("job-name")
        if not job:
            return False
        if kind == "DELETED":
            return False  # the Job's own end is what counts; keep the last view
        job_id = self.by_name.get(job)
        # Keep pods of tracked Jobs, of Jobs that still matter (not recorded), and of
        # Jobs not seen yet (the pod stream may run ahead of the Job stream).
        if job_id is None and self.view.state(job) is not None \
                and self.view.body(job) is None:
            self.pods.pop(job, None)
            return False
        return self._pod_seen(job, pod_view(body))

    def _pod_seen(self, job: str, view: PodView) -> bool:
        """The pod of Job `job` as last seen (under the lock); whether it has ended."""
        self.pods[job] = view
        job_id = self.by_name.get(job)
        t = self.jobs.get(job_id) if job_id else None
        if t is None:
            return False
        self.dirty.add(t.job_id)
        t.pending_since = autoscaling.pending_since(t.pending_since, view.unschedulable,
                                                    self._clock())
        return view.phase in ("Succeeded", "Failed")

    def pods_read(self, job: str, views: list[PodView]) -> None:
        """The pods of a tracked Job, read from the API (no pod watch: a waiting Job)."""
        view = latest_pod(views)
        if view is None:
            return
        with self.lock:
            if job not in self.by_name:
                return  # its verdict came meanwhile
            self._pod_seen(job, view)
        self.poke()

    # ------------------------------------------------------------ answers
    def waiting_jobs(self) -> dict[str, float]:
        """Job name -> shown since, of the tracked Jobs shown without a ready pod (for
        the pod reads of a controller without its pod watch: controller/k8s/podreads.py)."""
        with self.lock:
            return {t.name: t.shown_at for t in self.jobs.values()
                    if t.phase in (Phase.SEEN, Phase.UNFIT) and t.shown_at is not None
                    and waits_for_pod(self.view.body(t.name))}

    def waiting_by_reason(self) -> Counter[str]:
        """The tracked Jobs' pods that wait, by reason, as last seen (the runner-pod
        gauge of a controller without its pod watch: the pods it reads)."""
        with self.lock:
            return Counter(pod.reason for t in self.jobs.values()
                           if (pod := self.pods.get(t.name)) is not None
                           and pod.reason is not None)

    def pending_pods(self) -> dict[str, float]:
        """Pod name -> unschedulable since, of tracked jobs."""
        with self.lock:
            return {pod.name: t.pending_since for t in self.jobs.values()
                    if t.pending_since is not None
                    and (pod := self.pods.get(t.name)) is not None}

    def mark_unfit(self, unfit: dict[str, str]) -> None:
        """The autoscaler's word on some unschedulable pods: no node fits them."""
        if not unfit:
            return
        with self.lock:
            for t in self.jobs.values():
                pod = self.pods.get(t.name)
                if pod is not None and pod.name in unfit and t.pending_since is not None:
                    t.unfit = unfit[pod.name]
                    self.signal_locked(t.job_id, Signal.UNFIT)
        self.poke()
