"""Benchmark: the campaign page's data requests on a 10^5-job campaign vs a 100-job one.

One store holds both groups: `big` (--jobs, 100,000) and `small` (100), each 90 %
COMPLETED with a result summary (energy, gap, dipole as tests/unit/core/campaign_helpers
writes them), 5 % FAILED, 5 % QUEUED, built through JobStore.submit_batch (task sp) and
finished in bulk (records rewritten, queue markers moved to done markers); cached under
the temp folder between runs. A real `qforge server` serves it; a viewer signs in
through the page's form (a real session cookie), then, for each group in turn:

  a page view  GET /campaigns/<group> (HTML), /ui/api/groups/<group>/live, .../summary,
               .../rows (the first 50, in submission order)
  interactions .../rows sorted by energy descending, filtered to FAILED, the second
               page, a text filter, and .../live again (the page's 2 s poll)

The server reads the records of the campaigns changed last when it starts (timed from
its log and reported, not compared; the first request waits for it), the first view
sorts each order once (logged); then the
two groups are measured interleaved, --reps times; the figure is the median time of the
page view plus the interactions. Target: big within 1.5x of small. Also printed: the
page's total transfer (HTML, CSS, scripts and the data of one view of the big group)
and the server's resident memory with both tables held.

Knobs: --jobs/BENCH_PAGE_JOBS, --reps/BENCH_PAGE_REPS (15), --dir (or QFORGE_BENCH_DIR),
--rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import env_int, log

from qforge.record import JobRecord, Status
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge.store.layout import DoneKey, QueueKey
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import JobError
from qforge_runner.timestamps import utcnow
from tests.integration.server.conftest import Server
from tests.molecules import WATER_EXPERIMENTAL
from tests.unit.core.campaign_helpers import HERE, summary
from tests.waiting import wait_until

TARGET = 1.5
WARMED = re.compile(r"Read the tables of \d+ campaign\(s\) for the page in ([0-9.]+) s")
BATCH = 5000


def _items(start: int, n: int, group: str) -> list[tuple[JobSpec, str]]:
    """`n` distinct molecules (no two alike: a duplicate would join an existing job
    instead of making one), numbered from `start`, each group on an axis of its own."""
    mol = parse_xyz(WATER_EXPERIMENTAL)
    axis = 0 if group == "big" else 1
    out = []
    for i in range(start, start + n):
        first = list(mol.geometry[0])
        first[axis] += 1e-5 * (i + 1)
        moved = mol.model_copy(update={"geometry": (tuple(first), *mol.geometry[1:])})
        out.append((JobSpec(molecule=moved, name=f"{group}-{i:06d}", task="sp"),
                    moved.to_xyz()))
    return out


def _finish_all(store: JobStore, records: list[JobRecord]) -> None:
    """Most COMPLETED (energies spread), some FAILED, some left QUEUED: each record
    rewritten and its queue marker replaced by the done marker, as store.finish leaves
    them (in bulk: no claim per job)."""
    for i, rec in enumerate(records):
        kind = i % 20
        if kind == 19:
            continue  # stays QUEUED
        stamp = utcnow()
        if kind == 18:
            done = rec.evolve(status=Status.FAILED, started_at=stamp, finished_at=stamp,
                              placement=HERE, attempts=1,
                              error=JobError(type="convergence_error",
                                             message="SCC did not converge"))
        else:
            done = rec.evolve(status=Status.COMPLETED, started_at=stamp, finished_at=stamp,
                              placement=HERE, attempts=1,
                              result=summary(-5.0 - (i * 7919 % 1000) / 1000,
                                             gap=8 + (i * 104729 % 1000) / 250))
        store.write(done)
        key = QueueKey.make(rec.spec.priority, rec.created_ns, rec.job_id)
        (store.layout.queue / key.name).unlink(missing_ok=True)
        marker = store.layout.done(done.status.value) / DoneKey(
            int(time.time_ns()), rec.job_id).name
        marker.touch()


def build(root: Path, jobs: int) -> None:
    # A fixture, not data to keep: no fsync while it is written (the store's durable
    # writes fsync every file and folder; 10^5 jobs would take most of an hour).
    real_fsync, os.fsync = os.fsync, lambda fd: None
    try:
        _build(root, jobs)
    finally:
        os.fsync = real_fsync
    os.sync()


def _build(root: Path, jobs: int) -> None:
    store = JobStore(root)
    store.ensure()
    for group, n in (("small", 100), ("big", jobs)):
        started = time.monotonic()
        for start in range(0, n, BATCH):
            subs = store.submit_batch(_items(start, min(BATCH, n - start), group),
                                      group=group, owner="bench")
            assert all(s.duplicate_of is None for s in subs), "a duplicate molecule"
            _finish_all(store, [s.record for s in subs])
            if n > BATCH:
                log(f"{group}: {start + len(subs)} of {n} jobs written "
                    f"({time.monotonic() - started:.0f} s)")


def _cached_store(base: Path, jobs: int, rebuild: bool) -> Path:
    key = hashlib.sha256(f"{jobs}|{sorted(JobRecord.model_fields)}|2".encode()).hexdigest()
    root = base / f"qforge-bench-page-{jobs}-{key[:10]}"
    ready = root / ".bench-ready"
    if rebuild and root.exists():
        shutil.rmtree(root)
    if not ready.exists():
        if root.exists():
            shutil.rmtree(root)
        log(f"building the store ({jobs} + 100 jobs) under {root}")
        build(root, jobs)
        for group, n in (("small", 100), ("big", jobs)):
            held = len(JobStore(root).groups.ids(group))
            assert held == n, f"group {group} holds {held} jobs, not {n}"
        ready.touch()
    return root


def view(http: httpx.Client, group: str) -> tuple[float, int]:
    """One page view and the interactions: seconds, bytes received."""
    api = f"/ui/api/groups/{group}"
    paths = [f"/campaigns/{group}", f"{api}/live", f"{api}/summary", f"{api}/rows",
             f"{api}/rows?sort=energy&desc=true", f"{api}/rows?status=FAILED",
             f"{api}/rows?offset=50", f"{api}/rows?q=-00001", f"{api}/live"]
    size = 0
    start = time.perf_counter()
    for path in paths:
        r = http.get(path)
        r.raise_for_status()
        size += len(r.content)
    return time.perf_counter() - start, size


def _rss_mib(pid: int) -> float:
    """The server's resident memory, with both campaigns' tables held."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=env_int("BENCH_PAGE_JOBS", 100_000))
    ap.add_argument("--reps", type=int, default=env_int("BENCH_PAGE_REPS", 15))
    ap.add_argument("--dir", default=os.environ.get("QFORGE_BENCH_DIR",
                                                    tempfile.gettempdir()))
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    root = _cached_store(Path(args.dir), args.jobs, args.rebuild)
    # The bench's requests come faster than a person's: no rate limit in the way.
    os.environ["API_RATE_LIMIT"] = "1000000"
    os.environ["API_RATE_BURST"] = "1000000"
    with tempfile.TemporaryDirectory(prefix="qforge-bench-page-") as home:
        server = Server(jobs=root, home=Path(home))
        server.start()
        try:
            token = server.token(f"bench-{os.getpid()}", "viewer")  # the store is reused
            with httpx.Client(base_url=server.url, timeout=600) as http:
                r = http.post("/signin", data={"token": token}, follow_redirects=False)
                assert r.status_code == 303 and "qforge_session" in r.cookies, r.text
                first: dict[str, float] = {}
                for group, n in (("small", 100), ("big", args.jobs)):
                    t0 = time.perf_counter()
                    total = http.get(f"/ui/api/groups/{group}/live").json()["total"]
                    first[group] = time.perf_counter() - t0
                    assert total == n, f"the page counts {total} jobs in {group}, not {n}"
                    log(f"first request for {group}: {first[group]:.2f} s")
                warmed = wait_until(lambda: WARMED.search(server.server_log()), 600,
                                    "the server's start-up read of the campaigns")
                read_s = float(warmed.group(1))
                log(f"the server read both campaigns' records at start-up in {read_s:.1f} s")
                for group in ("small", "big"):
                    t, _ = view(http, group)
                    log(f"first view of {group} (each order sorted once): {t:.2f} s")
                times: dict[str, list[float]] = {"small": [], "big": []}
                sizes: dict[str, int] = {}
                for _ in range(args.reps):
                    for group in ("small", "big"):
                        t, size = view(http, group)
                        times[group].append(t)
                        sizes[group] = size
                rss = _rss_mib(server.proc.pid if server.proc else 0)
                assets = sum(len(http.get(p).content) for p in (
                    "/static/app.css", "/static/app.js", "/static/plots.js",
                    "/static/campaign.js"))
        finally:
            server.stop()
    big, small = statistics.median(times["big"]), statistics.median(times["small"])
    ratio = big / small
    print(f"bench: page data requests (a campaign view + sort, filter, next page, "
          f"search, poll; {args.reps} reps, median) {args.jobs}-job campaign "
          f"{big * 1000:.1f} ms vs 100-job {small * 1000:.1f} ms = {ratio:.2f}x "
          f"(target <= {TARGET}x) {'PASS' if ratio <= TARGET else 'FAIL'}; "
          f"records of both read once at the server's start {read_s:.1f} s "
          f"(the first request waited {first['big']:.1f} s); "
          f"page transfer {(assets + sizes['big']) / 1024:.0f} KiB "
          f"({args.jobs}-job campaign: {assets / 1024:.0f} KiB of assets, "
          f"{sizes['big'] / 1024:.0f} KiB of HTML and data; 100-job: "
          f"{(assets + sizes['small']) / 1024:.0f} KiB); server RSS {rss:.0f} MiB")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
