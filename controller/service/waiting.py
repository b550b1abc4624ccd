"""Why a job waits, in words a chemist can act on (`qforge show`, the page): its place
in the queue, the cap and what holds it, whether any worker or controller is alive."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qforge.record import JobRecord, Status
from qforge.scheduling.fairview import fair_view, waiting_words
from qforge.scheduling.owners import Owners
from qforge.settings import Settings
from qforge.store.heartbeats import beat_ages, others_may_recover
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey
from qforge.store.waiting import WAITING_FOR, is_waiting


def queue_position(store: JobStore, record: JobRecord) -> tuple[int, int] | None:
    key = QueueKey.make(record.spec.priority, record.created_ns, record.job_id)
    keys = store.queue.queued()
    try:
        return keys.index(key) + 1, len(keys)
    except ValueError:
        return None


@dataclass(frozen=True)
class BeatSummary:
    """Who beats on a store: local workers and cluster controllers fresh within 3 poll
    intervals (by wall clock: a hint, not a verdict), and the age of each kind's newest
    beat (None: none of that kind has a heartbeat file)."""

    workers: int = 0
    controllers: int = 0
    worker_age: float | None = None
    controller_age: float | None = None


def beat_summary(store: JobStore, settings: Settings) -> BeatSummary:
    fresh = {True: 0, False: 0}
    newest: dict[bool, float | None] = {True: None, False: None}
    for name, age in beat_ages(store, time.time()).items():
        controller = not others_may_recover(name)
        seen = newest[controller]
        newest[controller] = age if seen is None else min(seen, age)
        if age <= max(3 * settings.poll_interval, 15):
            fresh[controller] += 1
    return BeatSummary(workers=fresh[False], controllers=fresh[True],
                       worker_age=newest[False], controller_age=newest[True])


def in_cluster(settings: Settings, beats: BeatSummary) -> bool:
    """The store belongs to a Kubernetes release: run in the controller's pod (the chart
    sets POD_NAME) or a controller has beaten on it."""
    return settings.pod_name is not None or beats.controller_age is not None


def cap_line(running: int, settings: Settings, *, cluster: bool) -> str:
    cap = settings.max_concurrent_jobs
    if cluster:  # the controller counts its release's runner Jobs, wherever they run
        return (f"{running} job(s) running; the cap is {cap} runner Jobs at once for the "
                "controller (MAX_CONCURRENT_JOBS)")
    return (f"{running} job(s) running; the cap is {cap} at once for each `qforge worker` "
            "(MAX_CONCURRENT_JOBS)")


def nobody_line(settings: Settings, beats: BeatSummary, *, cluster: bool) -> str | None:
    """Why nothing will pick the job up, if no worker or controller beats; else None."""
    if beats.workers or beats.controllers:
        return None
    if cluster:
        pods = f"`kubectl -n {settings.namespace} get pods`"
        if beats.controller_age is None:
            return f"no controller has run on this store yet: is it up? ({pods})"
        return (f"no controller seems to be running (last heartbeat "
                f"{beats.controller_age:.0f}s ago): is it up? ({pods})")
    if beats.worker_age is None:
        return "no worker has ever run on this store: start one with `qforge worker`"
    return (f"no worker seems to be running (last heartbeat {beats.worker_age:.0f}s ago): "
            "start one with `qforge worker`")


def dependency_line(store: JobStore, record: JobRecord) -> str:
    """"waiting for job a (RUNNING), b (COMPLETED) to finish; then it starts from the
    lowest-energy completed one's optimised geometry" (one record read per parent)."""
    states = []
    for parent in record.depends_on:
        data = store.peek(parent)
        states.append(f"{parent} ({data.get('status', '?') if data else 'gone'})")
    return (f"{WAITING_FOR}{'jobs' if len(states) > 1 else 'job'} {', '.join(states)} to "
            "finish; then it starts from the optimised geometry of the lowest-energy one "
            "that completed (none completed: it is cancelled)")


def waiting_line(store: JobStore, record: JobRecord) -> str:
    if is_waiting(record):
        return f"(waiting for {len(record.depends_on)} job(s) to finish)"
    if record.status is Status.QUEUED:
        pos = queue_position(store, record)
        return f"(position {pos[0]} of {pos[1]} in the queue)" if pos else ""
    if record.status is Status.RUNNING and record.placement:
        p = record.placement
        return f"(on {p.k8s_job or p.instance or p.worker_id})"
    return ""


# One owner cache per store in this process: a server answering `show` many times reads
# each queued job's record once, not at every call (scheduling/owners.py).
_OWNERS: dict[str, Owners] = {}


def owners_cache(store: JobStore) -> Owners:
    key = str(store.layout.root)
    if key not in _OWNERS:
        _OWNERS[key] = Owners.of(store)
    return _OWNERS[key]


def fair_line(store: JobStore, record: JobRecord, settings: Settings) -> str | None:
    """"alice has 3 of 6 slots; bob's turn is next; position 4 among alice's jobs"
    (reads each queued job's owner once per process: O(queued) the first time)."""
    owners = owners_cache(store)
    view = fair_view(store, settings, owners)
    owners.prune((k.job_id for keys in view.queued.values() for k in keys),
                 sum(len(keys) for keys in view.queued.values()))
    key = QueueKey.make(record.spec.priority, record.created_ns, record.job_id)
    if key not in view.queued.get(record.owner, []):
        return None
    return waiting_words(view, record.owner, key)


def why_waiting(store: JobStore, record: JobRecord, settings: Settings) -> list[str]:
    lines: list[str] = []
    if store.cancels.requested(record.job_id):
        lines.append("cancel requested; the scheduler will act on it")
    beats = beat_summary(store, settings)
    cluster = in_cluster(settings, beats)
    pos = queue_position(store, record)
    if pos:
        lines.append(f"queue position {pos[0]} of {pos[1]} (priority {record.spec.priority}; "
                     "a free slot goes to the owner with the fewest running jobs for their "
                     "share, then higher priorities first, then first come first served)")
        lines.append(cap_line(len(store.queue.running_markers()), settings, cluster=cluster))
        fair = fair_line(store, record, settings)
        if fair:
            lines.append(fair)
    if is_waiting(record):
        lines.append(dependency_line(store, record))
    elif record.waiting_reason:
        lines.append(record.waiting_reason)
    nobody = nobody_line(settings, beats, cluster=cluster)
    if nobody:
        lines.append(nobody)
    return lines
