"""Chaos on the local worker: several `qforge worker` processes on one store, SIGKILLed
at random moments (a seeded random.Random, the seed printed) and restarted, with real xtb.

What it proves, and how:
- nothing lost: every job ends COMPLETED with an energy, no marker is left behind;
- no job runs twice at once: xtb is reached through a wrapper (first on PATH) that
  stamps `start`/`end` lines (wall-clock ns) into one append-only file. A run whose
  worker was killed writes no `end`: its end is the moment every process below the
  killed worker was seen gone (xtb dies with its worker: PR_SET_PDEATHSIG, set both by
  the harness for the wrapper and by the wrapper for xtb). Per job, the intervals must
  not overlap;
- dead workers' jobs are taken back within their lease: a monitor thread sees the
  running markers `<job>+<dead instance>` disappear (taken over and requeued) and the
  kill → requeue time of each kill is printed beside the lease.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from qforge.store.jobstore import JobStore
from qforge.store.layout import Layout
from qforge_runner.molecule import Molecule, parse_molecule
from qforge_runner.spec import JobSpec
from tests.molecules import ACETONE, BENZENE, CAFFEINE, METHANOL
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
XTB = shutil.which("xtb") or "/usr/bin/xtb"

WRAPPER = """#!/bin/sh
# qforge chaos test: stamps each xtb run (job = the scratch folder's name) around the
# real xtb, which dies with this shell (pdeathsig) as this shell dies with its worker.
job=$(basename "$PWD")
echo "start $job $$ $(date +%s%N)" >> "$QFORGE_CHAOS_STAMPS"
setpriv --pdeathsig KILL -- {xtb} "$@"
rc=$?
echo "end $job $$ $(date +%s%N)" >> "$QFORGE_CHAOS_STAMPS"
exit $rc
"""

# (molecule, task): one to a few seconds of xtb each, so kills land mid-run
MOLECULES = [(CAFFEINE, "hess"), (CAFFEINE, "ohess"), (BENZENE, "ohess"), (ACETONE, "ohess"),
             (METHANOL, "ohess")]


@dataclass
class Kill:
    pid: int
    instance: str
    owned: set[str]
    at: float  # monotonic
    gone_ns: int = 0  # wall clock: every process below the worker gone
    recovered_after: float | None = None  # seconds: kill -> no marker of it left


@dataclass
class Figures:
    seed: int
    workers: int
    jobs: int
    lease: float
    kills: list[Kill] = field(default_factory=list)
    runs: int = 0
    interrupted_runs: int = 0
    max_attempts: int = 0
    wall: float = 0.0

    @property
    def recoveries(self) -> list[float]:
        return [k.recovered_after for k in self.kills
                if k.owned and k.recovered_after is not None]

    def lines(self) -> list[str]:
        rec = self.recoveries
        out = [f"chaos: seed {self.seed}: {self.jobs} jobs, {self.workers} workers, "
               f"lease {self.lease:g} s; {len(self.kills)} SIGKILLs survived "
               f"({sum(1 for k in self.kills if k.owned)} while running jobs), "
               f"{self.runs} xtb runs ({self.interrupted_runs} interrupted), "
               f"max attempts of a job {self.max_attempts}, {self.wall:.1f} s"]
        if rec:
            out.append("chaos: kill -> requeue (s): " + " ".join(f"{r:.1f}" for r in rec)
                       + f"; max {max(rec):.1f} s, lease {self.lease:g} s")
        return out


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            kids += [int(c) for c in text.split()]
    return kids


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for kid in _children(todo.pop()):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Chaos:
    def __init__(self, tmp: Path, *, seed: int, workers: int = 3, jobs: int = 20,
                 kills: int = 10, lease: float = 3.0, poll: float = 0.5,
                 max_concurrent: int = 2) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.n_workers = workers
        self.n_jobs = jobs
        self.n_kills = kills
        self.lease = lease
        self.poll = poll
        self.max_concurrent = max_concurrent
        self.jobs_dir = tmp / "jobs"
        self.layout = Layout(self.jobs_dir)
        self.stamps = tmp / "stamps.log"
        self.bin = tmp / "bin"
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started = 0
        self.figures = Figures(seed, workers, jobs, lease)
        self._stop_monitor = threading.Event()
        self._pending: list[Kill] = []
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- set-up
    def prepare(self) -> list[str]:
        self.bin.mkdir(parents=True)
        wrapper = self.bin / "xtb"
        wrapper.write_text(WRAPPER.format(xtb=XTB))
        wrapper.chmod(0o755)
        self.stamps.touch()
        store = JobStore(self.jobs_dir)
        ids = []
        for i in range(self.n_jobs):
            text, task = MOLECULES[i % len(MOLECULES)]
            molecule = parse_molecule(text)
            # each job its own input (a 1e-4 Å nudge): no two are duplicates
            (x, y, z), *rest = molecule.geometry
            molecule = Molecule(symbols=molecule.symbols, comment=molecule.comment,
                                geometry=((x + 1e-4 * (i + 1), y, z), *rest))
            spec = JobSpec(molecule=molecule, task=task, name=f"chaos{i:03d}")
            ids.append(store.submit(spec, input_text=molecule.to_xyz()).job_id)
        return ids

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("QFORGE_DEBUG", None)
        env.update(JOBS_DIR=str(self.jobs_dir), PATH=f"{self.bin}:{env.get('PATH', '')}",
                   QFORGE_CHAOS_STAMPS=str(self.stamps), XTBPATH="/usr/share/xtb",
                   LEASE_SECONDS=str(self.lease), POLL_INTERVAL=str(self.poll),
                   MAX_CONCURRENT_JOBS=str(self.max_concurrent), MAX_ATTEMPTS="50",
                   HEALTH_CHECK_INTERVAL="5", PYTHONUNBUFFERED="1",
                   TMPDIR=str(self.tmp / "scratch"))
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.started += 1
        (self.tmp / "scratch").mkdir(exist_ok=True)
        with open(self.tmp / f"worker-{self.started}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qforge.cli.main", "worker",
                 "--worker-id", f"chaos_{self.started}"],
                cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[proc.pid] = proc
        return proc

    # ---------------------------------------------------------------- chaos
    def instance_of(self, pid: int) -> str | None:
        try:
            names = os.listdir(self.layout.workers)
        except FileNotFoundError:
            return None
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                if json.loads((self.layout.workers / name).read_text())["pid"] == pid:
                    return name
        return None

    def owned_by(self, instance: str) -> set[str]:
        suffix = f"+{instance}"
        return {n[: -len(suffix)] for n in os.listdir(self.layout.running)
                if n.endswith(suffix)}

    def kill_one(self) -> None:
        live = [p for p in self.procs.values() if p.poll() is None]
        infos = [(p, self.instance_of(p.pid)) for p in live]
        busy = [(p, i) for p, i in infos if i is not None and self.owned_by(i)]
        proc, instance = self.rng.choice(busy or infos)
        below = descendants(proc.pid)
        owned = self.owned_by(instance) if instance else set()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kill = Kill(proc.pid, instance or "?", owned, time.monotonic())
        # xtb and its wrapper die with the worker (pdeathsig): bounded wait for that
        wait_until(
            lambda: not any(_alive(p) for p in below),
            10,
            f"the processes of killed worker {proc.pid} to die",
            interval=0.05,
        )
        kill.gone_ns = time.time_ns()
        with self._lock:
            self.figures.kills.append(kill)
            if owned:
                self._pending.append(kill)
        self.start_worker()  # as a supervisor would

    def _monitor(self) -> None:
        while not self._stop_monitor.wait(0.05):
            with self._lock:
                pending = list(self._pending)
            for kill in pending:
                with contextlib.suppress(FileNotFoundError):
                    if not self.owned_by(kill.instance):
                        kill.recovered_after = time.monotonic() - kill.at
                        with self._lock:
                            self._pending.remove(kill)

    def statuses(self, ids: list[str]) -> dict[str, str]:
        out = {}
        for job_id in ids:
            try:
                out[job_id] = json.loads(self.layout.metadata(job_id).read_text())["status"]
            except (OSError, ValueError):
                out[job_id] = "?"
        return out

    def run(self, timeout: float = 420) -> Figures:
        t0 = time.monotonic()
        ids = self.prepare()
        print(f"chaos: seed {self.figures.seed} (replay with QFORGE_CHAOS_SEED="
              f"{self.figures.seed})", flush=True)
        monitor = threading.Thread(target=self._monitor, daemon=True)
        monitor.start()
        try:
            for _ in range(self.n_workers):
                self.start_worker()
            deadline = time.monotonic() + timeout
            for _ in range(self.n_kills):
                time.sleep(self.rng.uniform(0.5, 2.5))
                if all(s in ("COMPLETED", "FAILED", "CANCELLED")
                       for s in self.statuses(ids).values()):
                    break
                self.kill_one()
            wait_until(
                lambda: all(s in ("COMPLETED", "FAILED", "CANCELLED")
                              for s in self.statuses(ids).values()),
                max(1.0, deadline - time.monotonic()),
                f"all {len(ids)} jobs terminal",
                interval=0.2,
            )
            wait_until(
                lambda: not self._pending,
                3 * self.lease + 10,
                "every killed worker's jobs requeued",
                interval=0.05,
            )
        finally:
            self._stop_monitor.set()
            monitor.join(timeout=5)
            self.stop_all()
        self.figures.wall = time.monotonic() - t0
        self.check(ids)
        return self.figures

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    # ---------------------------------------------------------------- checks
    def runs(self) -> dict[str, list[tuple[int, int]]]:
        """Per job, its xtb runs as (start_ns, end_ns) intervals."""
        starts: dict[tuple[str, str], int] = {}
        ends: dict[tuple[str, str], int] = {}
        for line in self.stamps.read_text().splitlines():
            kind, scratch, pid, ns = line.split()
            (starts if kind == "start" else ends)[(scratch, pid)] = int(ns)
        gone = sorted(k.gone_ns for k in self.figures.kills)
        per_job: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for (scratch, pid), start in starts.items():
            end = ends.get((scratch, pid))
            if end is None:
                # killed with its worker: ended at the latest when that kill's processes
                # were all gone, the first such moment after its start
                self.figures.interrupted_runs += 1
                later = [g for g in gone if g > start]
                assert later, f"run {scratch} (pid {pid}) never ended and was not killed"
                end = later[0]
            # scratch folder: qforge-<job id>-<random>
            job_id = scratch.removeprefix("qforge-").rsplit("-", 1)[0]
            per_job[job_id].append((start, end))
        return per_job

    def check(self, ids: list[str]) -> None:
        states = self.statuses(ids)
        assert {j: s for j, s in states.items() if s != "COMPLETED"} == {}, states
        store = JobStore(self.jobs_dir)
        attempts = []
        for job_id in ids:
            record = store.read(job_id)
            assert record.result is not None and record.result.energy < 0, job_id
            attempts.append(record.attempts)
        self.figures.max_attempts = max(attempts)
        assert os.listdir(self.layout.running) == []
        assert os.listdir(self.layout.queue) == []
        per_job = self.runs()
        assert set(per_job) == set(ids), set(ids) ^ set(per_job)
        self.figures.runs = sum(len(r) for r in per_job.values())
        overlaps = []
        for job_id, intervals in per_job.items():
            intervals.sort()
            for (_, end), (start, _) in itertools.pairwise(intervals):
                if start < end:
                    overlaps.append((job_id, (start - end) / 1e9))
        assert overlaps == [], f"jobs run twice at once: {overlaps}"
        # nothing of any worker is left running
        leftovers = [p for proc in self.procs.values() for p in descendants(proc.pid)]
        assert leftovers == []
