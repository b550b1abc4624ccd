"""Benchmark a: the store work of one scheduler poll, big store vs empty store.

Three stores side by side in one temporary folder (same filesystem):
  empty   nothing in it;
  queued  only the queued jobs (default 1,000);
  full    the finished jobs (default 100,000 COMPLETED) plus the same queued jobs.
The jobs are written directly, not through JobStore.submit: a finished job is its
metadata.json as a real COMPLETED record dumps it; a queued one is what submit
leaves (metadata.json, input.xyz, its queue marker named by QueueKey). Each store
gets a `Scheduler` with a no-op executor whose free_slots() is 0, so `run_once()`
does a whole pass — index refresh, outcomes, cancel requests, dead-worker check,
queue listing, heartbeat (at most once a second), running markers — and claims
nothing; then again with a clock that moves one poll interval per reading, so that
each pass also rewrites the heartbeat, as a worker's poll every POLL_INTERVAL does.
The passes of the three stores are interleaved and the median of many is reported.
`Scheduler.start()` (the start-up index sync: listings, and reads of only the folders
no index holds) is timed separately, and so is the naive scan the worker qforge replaces
paid on every poll: read and parse every metadata.json. (bench_campaign.py times the full
rebuild that reads every record.)

Knobs (argparse, or the environment): --finished/BENCH_STORE_FINISHED,
--queued/BENCH_STORE_QUEUED, --reps/BENCH_STORE_REPS, --beat-reps, --naive-reps,
--dir (or QFORGE_BENCH_DIR) for where the stores are built (default: the system temp
folder; deleting 100,000 job folders there takes a while on a disk).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from benchlib import (
    MOLECULES,
    env_int,
    log,
    median,
    ms,
    scratch_dir,
    timed,
    write_file,
    write_queued_job,
)

from qforge.record import JobRecord, Placement, Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.executor import Outcome, Update
from qforge.settings import Settings
from qforge.spec import JobSpec
from qforge.store.jobstore import Claimed, JobStore, finished_ns
from qforge.store.layout import DoneKey
from qforge.store.listings import MTIME_MARGIN

TARGET = 1.5
ID_HOLE = "placeholder000000"  # a valid job id, replaced in the template text
NS_HOLE = 987654321987654321  # a created_ns, replaced likewise


class PollClock:
    """A monotonic clock that moves one poll interval each time it is read, so every
    pass does what a worker polling every POLL_INTERVAL does, heartbeat included."""

    def __init__(self, step: float) -> None:
        self.now = time.monotonic()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class IdleExecutor:
    """An executor that is always full: a pass looks at everything and claims nothing."""

    kind = "local"
    others_may_recover = True

    def attach(self, wake: threading.Event) -> None:
        pass

    def free_slots(self) -> int:
        return 0

    def launch(self, claimed: Claimed) -> None:  # pragma: no cover - never called
        raise AssertionError("the benchmark executor never launches")

    def adopt(self, claimed: Claimed) -> bool:
        return False

    def updates(self) -> list[Update]:
        return []

    def cancel(self, job_id: str) -> bool:
        return False

    def collect(self) -> list[Outcome]:
        return []

    def holding(self) -> set[str]:
        return set()

    def active(self) -> set[str]:
        return set()

    def shutdown(self) -> list[Outcome]:
        return []


def _spec() -> JobSpec:
    return JobSpec(molecule=MOLECULES["water"])


def completed_template() -> tuple[bytes, bytes, bytes]:
    """metadata.json of a real COMPLETED record, split around its job id and created_ns."""
    spec = _spec()
    now = "2026-11-28T13:30:39.123456Z"
    record = JobRecord(job_id=ID_HOLE, status=Status.QUEUED, created_at=now, updated_at=now,
                       created_ns=NS_HOLE, spec=spec)
    done = record.evolve(
        status=Status.COMPLETED, started_at=now, finished_at="2026-11-28T13:30:39.623456Z",
        attempts=1,
        placement=Placement(executor="local", worker_id="worker_1",
                            instance="worker_1.bench.1234.abcd", host="bench"),
        result={
            "energy": -5.070544374391, "gap": 14.541922024894, "converged": True,
            "formula": "H2O", "method": "gfn2", "task": "opt", "wall_time": 0.051,
            "xtb_version": "6.5.1", "dipole_debye": 2.1685,
            "quality": {"ok": True, "converged": True, "gap_ok": True,
                        "imaginary_frequencies": 0, "from_text_output": False,
                        "warnings": []},
        })
    text = (done.model_dump_json(indent=2) + "\n").encode()
    head, rest = text.split(ID_HOLE.encode())
    mid, tail = rest.split(str(NS_HOLE).encode())
    return head, mid, tail


def build_store(root: Path, finished: int, queued: int) -> None:
    """Write `finished` COMPLETED jobs and `queued` QUEUED jobs with their markers (a
    finished job's done marker, as JobStore.queue.finish leaves it). (A finished job's folder
    holds only metadata.json here: a poll never looks inside job folders, and the naive
    scan opens only metadata.json.)"""
    store = JobStore(root)
    store.ensure()
    head, mid, tail = completed_template()
    stamp = 0
    base_ns = time.time_ns() - 10**15  # the finished jobs were submitted earlier
    for i in range(finished):
        jid = f"water_20261128_{i // 1000:06d}_{i % 1000:04d}"
        folder = root / jid
        os.mkdir(folder)
        write_file(folder / "metadata.json", b"".join(
            (head, jid.encode(), mid, str(base_ns + i).encode(), tail)))
        if i == 0:
            record = store.read(jid)  # a real record
            if record.status is not Status.COMPLETED:
                raise SystemExit("bench_store: the COMPLETED template does not read back")
            stamp = finished_ns(record)
        write_file(store.layout.done("COMPLETED") / DoneKey(stamp, jid).name, b"")
        if i and i % 20000 == 0:
            log(f"{root.name}: {i} finished jobs written")
    spec = _spec()
    specs = {p: spec.model_copy(update={"priority": p}) for p in (-5, 0, 10)}
    base_ns = time.time_ns()
    for i in range(queued):
        jid = f"water_20261129_{i // 1000:06d}_{i % 1000:04d}"
        write_queued_job(store, jid, specs[(-5, 0, 0, 10)[i % 4]], base_ns + i)


def naive_scan(root: Path) -> int:
    """What the worker qforge replaces did each poll: read and parse every metadata.json."""
    queued = 0
    for name in os.listdir(root):
        try:
            with open(root / name / "metadata.json", "rb") as fh:
                data = json.loads(fh.read())
        except (NotADirectoryError, FileNotFoundError, ValueError):
            continue
        if data.get("status") == "QUEUED":
            queued += 1
    return queued


def interleaved(schedulers: dict[str, Scheduler], reps: int) -> dict[str, float]:
    """Median seconds of one run_once() per store, the stores' passes interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in schedulers}
    order = list(schedulers)
    clock = time.perf_counter
    for rep in range(reps):
        shift = rep % len(order)
        for name in order[shift:] + order[:shift]:  # rotate who goes first
            sched = schedulers[name]
            t0 = clock()
            sched.run_once()
            samples[name].append(clock() - t0)
    return {name: median(v) for name, v in samples.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--finished", type=int, default=env_int("BENCH_STORE_FINISHED", 100_000))
    p.add_argument("--queued", type=int, default=env_int("BENCH_STORE_QUEUED", 1_000))
    p.add_argument("--reps", type=int, default=env_int("BENCH_STORE_REPS", 2_000),
                   help="timed passes per store")
    p.add_argument("--beat-reps", type=int, default=env_int("BENCH_STORE_BEAT_REPS", 300),
                   help="timed passes per store with the heartbeat written each pass")
    p.add_argument("--naive-reps", type=int, default=env_int("BENCH_STORE_NAIVE_REPS", 1))
    p.add_argument("--dir", default=None, help="where to build the stores")
    args = p.parse_args()

    with scratch_dir("qforge-bench-store-", args.dir) as tmp:
        stores = {"empty": (0, 0), "queued": (0, args.queued),
                  "full": (args.finished, args.queued)}
        for name, (finished, queued) in stores.items():
            build = timed(lambda n=name, f=finished, q=queued: build_store(tmp / n, f, q))
            log(f"built store {name!r}: {finished} finished + {queued} queued in {build:.1f} s")

        schedulers: dict[str, Scheduler] = {}
        for name in stores:
            store = JobStore(tmp / name)
            settings = Settings(jobs_dir=tmp / name, worker_id="bench")
            sched = Scheduler(store, IdleExecutor(), settings)
            start = timed(sched.start)
            log(f"{name}: Scheduler.start() (start-up index sync) {ms(start)}")
            if name == "full":
                startup = start
                synced = sched.index.sync()
                log(f"{name}: records read by the start-up sync: {synced.read}")
            schedulers[name] = sched

        # queue.queued() trusts a listing only once the queue folder is MTIME_MARGIN
        # older than it (see there); the stores were written a moment ago, and the
        # start-up no longer takes long enough to hide that: let the margin pass, as it
        # has between any two polls of a real worker.
        time.sleep(MTIME_MARGIN + 0.1)
        # Warm up, then check every pass sees what it should.
        for sched in schedulers.values():
            for _ in range(20):
                report = sched.run_once()
        for name, (_, queued) in stores.items():
            report = schedulers[name].run_once()
            if report.queued != queued or report.launched:
                raise SystemExit(f"bench_store: {name}: a pass saw {report.queued} queued "
                                 f"(expected {queued}) and launched {report.launched}")

        # Back to back: the heartbeat (rewritten at most once a second) is in ~0 of them.
        med = interleaved(schedulers, args.reps)
        for name in stores:
            log(f"{name}: Scheduler.run_once() back to back: median {ms(med[name])} "
                f"over {args.reps} passes")
        # As a worker polls (every POLL_INTERVAL): each pass also rewrites the heartbeat.
        for sched in schedulers.values():
            sched.clock = sched.heartbeats.clock = PollClock(sched.settings.poll_interval)
        polled = interleaved(schedulers, args.beat_reps)
        for name in stores:
            log(f"{name}: Scheduler.run_once() with the heartbeat of every poll: median "
                f"{ms(polled[name])} over {args.beat_reps} passes")

        # Where a pass's time goes, on the full store (same steady state).
        full = schedulers["full"]
        parts = {
            "IndexKeeper.refresh()": full.index.refresh,
            "JobStore.queue.queued()": full.store.queue.queued,
            "JobStore.queue.running_markers()": full.store.queue.running_markers,
            "JobStore.cancels.pending()": full.store.cancels.pending,
        }
        for label, fn in parts.items():
            log(f"full: {label} median {ms(median([timed(fn) for _ in range(500)]))}")

        naive, counts = [], set()
        for _ in range(args.naive_reps):
            t0 = time.perf_counter()
            counts.add(naive_scan(tmp / "full"))
            naive.append(time.perf_counter() - t0)
        found = counts.pop()
        log(f"full: naive scan of every metadata.json {ms(median(naive))} "
            f"(finds {found} queued)")
        for sched in schedulers.values():
            sched.shutdown()
        log("removing the stores")

    ratio = med["full"] / med["empty"]
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"bench: store poll {args.finished} finished + {args.queued} queued: "
          f"{ms(med['full'])} vs empty store {ms(med['empty'])} "
          f"(ratio {ratio:.2f}, target <= {TARGET}, {verdict}); "
          f"{args.queued} queued only {ms(med['queued'])}; "
          f"with each poll's heartbeat {ms(polled['full'])} vs {ms(polled['empty'])} "
          f"(ratio {polled['full'] / polled['empty']:.2f}); "
          f"start-up index sync {ms(startup)} ({synced.read} records read); "
          f"naive scan of every metadata.json: {ms(median(naive))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
