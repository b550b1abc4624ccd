"""The local worker in steady state: `qforge worker` already running vs `xargs -P 2`.

Issue 25's benchmark of the worker's hot loop. Two workloads, each a GFN2 optimisation
(the default job), each submitted in one call (`JobStore.submit_batch`, force: no
deduplication):
  tiny   300 molecules: water, ammonia, methane (milliseconds of xtb each);
  big    60 molecules of >= 10 atoms: caffeine (24 atoms) and benzene (12).
Each workload runs in alternating rounds (qforge, xargs, lean, qforge, ...):
  qforge    a real `qforge worker --max-concurrent 2` started on a fresh store and left
            to go idle (its start-up not counted); then the jobs are submitted and the
            done folder's listing is polled (a listing every 10 ms, no Python process per
            poll) until every job is COMPLETED. Makespan: from the first job's start
            (its record's started_at, written at the claim, just before xtb starts) to the
            moment the last COMPLETED record is seen. The worker's own CPU (utime +
            stime of its process, all its threads, its children excluded: from
            /proc/<pid>/stat) from before the submission to the end, per job.
  xargs     the same xtb command lines (bench_pipeline.baseline: `JobSpec.xtb_args()`,
            started as the runner starts them: `setsid setpriv --pdeathsig KILL -- xtb`,
            `xtb_environment()`, a scratch folder each holding its input.xyz) by
            `xargs -P 2`, timed from its start to its exit.
  lean      the leanest Python worker doing the same durable store operations through
            the store API (`lean_worker` below, in a process of its own, already idle
            when the jobs come): the claim and its RUNNING record, xtb in a scratch
            folder, xtb's files moved and result.json written durably, the COMPLETED
            record, its done marker, the running marker dropped. One thread, `os.wait`
            for the next xtb to end. Its CPU per job is measured the same way.
Ratio of a round = xargs makespan / qforge makespan; the figure is the median over the
rounds. Targets: >= 0.85 (tiny), >= 0.97 (big); the worker's CPU per job <= 2 ms. The
machine's 1-minute load average is printed: above its core count the wall-clock ratios
are UNRELIABLE (other users' processes slow xtb as much as the worker); the CPU figures
hardly move with the load.

Knobs: --rounds / BENCH_STEADY_ROUNDS (3), --only tiny|big, --dir (or QFORGE_BENCH_DIR).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_pipeline import CONCURRENCY, baseline, xtb_path
from benchlib import MOLECULES, REPO, env_int, log, qforge_command, scratch_dir

from qforge.record import Placement, Status
from qforge.spec import JobSpec
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.atomic import write_files_atomic
from qforge_runner.environment import xtb_environment
from qforge_runner.harness import artifacts
from qforge_runner.summary import QualitySummary, ResultSummary
from qforge_runner.timestamps import utcnow

POLL = 0.01
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    key: str
    molecules: tuple[str, ...]
    count: int
    target: float


WORKLOADS = (
    Workload("tiny", ("water", "ammonia", "methane"), 300, 0.85),
    Workload("big", ("caffeine", "benzene"), 60, 0.97),
)
CPU_TARGET = 2e-3


@dataclass
class Rounds:
    qforge: list[float] = field(default_factory=list)
    xargs: list[float] = field(default_factory=list)
    lean: list[float] = field(default_factory=list)
    cpu_qforge: list[float] = field(default_factory=list)  # s per job, the worker itself
    cpu_lean: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def jobs_of(w: Workload) -> list[tuple[str, JobSpec]]:
    built = {name: JobSpec(molecule=MOLECULES[name]) for name in w.molecules}
    return [(w.molecules[i % len(w.molecules)], built[w.molecules[i % len(w.molecules)]])
            for i in range(w.count)]


def runner_prefix() -> tuple[str, ...]:
    """What the runner puts before xtb (qforge_runner.process): a session of its own
    (which, with the kernel's autogroup scheduling, also gives it a CPU share of its
    own on a busy machine) and setpriv's parent-death signal."""
    setsid, setpriv = shutil.which("setsid"), shutil.which("setpriv")
    if setsid is None or setpriv is None:
        raise SystemExit("bench_steady_pipeline: setsid and setpriv (util-linux) needed")
    return (setsid, setpriv, "--pdeathsig", "KILL", "--")


def own_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads; not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def submit(store: JobStore, jobs: list[tuple[str, JobSpec]]) -> None:
    store.submit_batch([(spec, spec.molecule.to_xyz()) for _, spec in jobs],
                       group="bench", force=True)


def wait_done(store: JobStore, count: int, proc: subprocess.Popen[bytes],
              limit: float) -> float:
    """Poll the done folder's listing until `count` COMPLETED markers; the wall time."""
    folder = store.layout.done(Status.COMPLETED.value)
    failed = store.layout.done(Status.FAILED.value)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if len(os.listdir(folder)) >= count:
            return time.time()
        if proc.poll() is not None or os.listdir(failed):
            break
        time.sleep(POLL)
    raise SystemExit(f"bench_steady_pipeline: {len(os.listdir(folder))} of {count} "
                     f"COMPLETED (worker exit {proc.poll()}, failed "
                     f"{len(os.listdir(failed))})")


def first_start(store: JobStore) -> float:
    from datetime import datetime

    stamps = [rec.started_at for rec in store.iter_records()
              if not isinstance(rec, Exception) and rec.started_at]
    return min(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
               for s in stamps)


def idle_process(argv: list[str], env: dict[str, str], ready: Callable[[], bool],
                 log_path: Path) -> subprocess.Popen[bytes]:
    """Start a worker and wait until it is up and idle."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None or time.monotonic() > end:
            sys.stderr.write(log_path.read_text()[-3000:])
            raise SystemExit("bench_steady_pipeline: the worker did not start")
        time.sleep(0.05)
    time.sleep(1.0)  # its start-up pass done, idle
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def through_qforge(jobs: list[tuple[str, JobSpec]], root: Path) -> tuple[float, float]:
    """(makespan s, the worker's own CPU s per job)."""
    store = JobStore(root / "jobs")
    store.ensure()
    (root / "scratch").mkdir()
    env = dict(os.environ, JOBS_DIR=str(store.root), QFORGE_SCRATCH=str(root / "scratch"))
    argv = [*qforge_command(), "worker", "--max-concurrent", str(CONCURRENCY)]
    proc = idle_process(argv, env, lambda: bool(os.listdir(store.layout.workers)),
                        root / "worker.log")
    try:
        before = own_cpu(proc.pid)
        submit(store, jobs)
        last = wait_done(store, len(jobs), proc, 600)
        cpu = own_cpu(proc.pid) - before
    finally:
        stop(proc)
    return last - first_start(store), cpu / len(jobs)


def through_lean(jobs: list[tuple[str, JobSpec]], root: Path, xtb: str
                 ) -> tuple[float, float]:
    store = JobStore(root / "jobs")
    store.ensure()
    (root / "scratch").mkdir()
    ready = root / "ready"
    argv = [sys.executable, __file__, "--lean", str(root), xtb, str(len(jobs))]
    proc = idle_process(argv, dict(os.environ), ready.exists, root / "lean.log")
    try:
        submit(store, jobs)
        last = wait_done(store, len(jobs), proc, 600)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            stop(proc)
    cpu = float((root / "cpu").read_text())
    return last - first_start(store), cpu / len(jobs)


def lean_summary(spec: JobSpec, energy: float, wall: float) -> ResultSummary:
    """The lean worker's result summary: its energy and time, nothing assessed."""
    return ResultSummary(
        energy=energy, gap=None, converged=True, formula=None, method=spec.method,
        task=spec.task, wall_time=round(wall, 3), xtb_version=None, dipole_debye=None,
        topology_changed=None, thermochemistry=None,
        quality=QualitySummary(ok=True, converged=True, gap_ok=True, imaginary_frequencies=0,
                               from_text_output=False, topology_changed=False, warnings=()))


def lean_worker(root: Path, xtb: str, count: int) -> None:
    """The leanest durable worker on the store API: one thread, `os.wait` for xtb."""
    store = JobStore(root / "jobs")
    instance = f"lean.{socket.gethostname()}.{os.getpid()}"
    placement = Placement(executor="local", worker_id="lean", instance=instance,
                          host=socket.gethostname())
    (root / "ready").touch()
    while store.queue.is_empty():
        time.sleep(0.05)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    prefix = runner_prefix()[1:]  # a new session from Popen itself
    running: dict[int, tuple[Claimed, Path, subprocess.Popen[bytes], float]] = {}
    done = 0
    keys = store.queue.queued()
    while done < count:
        while len(running) < CONCURRENCY and keys:
            claimed = store.queue.claim(keys.pop(0), instance, placement)
            if claimed is None:
                continue
            spec = claimed.record.spec
            scratch = root / "scratch" / claimed.record.job_id
            scratch.mkdir()
            (scratch / "input.xyz").write_text(spec.molecule.to_xyz())
            with open(scratch / "xtb.log", "wb") as out:
                proc = subprocess.Popen([*prefix, xtb, "input.xyz", *spec.xtb_args()],
                                        cwd=scratch, env=xtb_environment(spec, xtb),
                                        stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            running[proc.pid] = (claimed, scratch, proc, time.monotonic())
        pid, status = os.wait()
        claimed, scratch, proc, began = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        energy = json.loads((scratch / "xtbout.json").read_bytes())["total energy"]
        wall = time.monotonic() - began
        job_dir = store.layout.job_dir(claimed.record.job_id)
        body = json.dumps({"success": True, "energy": energy, "wall_time": wall}).encode()
        write_files_atomic([*artifacts(scratch, job_dir), (job_dir / "result.json", body)],
                           move=True)
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
        record = claimed.record.evolve(
            status=Status.COMPLETED, finished_at=utcnow(),
            result=lean_summary(claimed.record.spec, energy, wall))
        store.queue.finish(claimed, record)
        done += 1
        if not keys:
            keys = store.queue.queued()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    (root / "cpu").write_text(str(usage.ru_utime + usage.ru_stime - before))


def run_workload(w: Workload, rounds: int, tmp: Path, xtb: str) -> Rounds:
    jobs = jobs_of(w)
    out = Rounds()
    for r in range(rounds):
        q, cpu_q = through_qforge(jobs, tmp / f"{w.key}-qforge{r}")
        load = os.getloadavg()[0]
        b, _ = baseline(jobs, tmp / f"{w.key}-xargs{r}", xtb, prefix=runner_prefix())
        lean, cpu_l = through_lean(jobs, tmp / f"{w.key}-lean{r}", xtb)
        out.qforge.append(q)
        out.xargs.append(b)
        out.lean.append(lean)
        out.cpu_qforge.append(cpu_q)
        out.cpu_lean.append(cpu_l)
        out.loads.extend((load, os.getloadavg()[0]))
        log(f"{w.key} round {r + 1}: qforge {q:.2f} s, xargs {b:.2f} s, lean {lean:.2f} s: "
            f"ratio {b / q:.2f} (lean {b / lean:.2f}); CPU per job: worker "
            f"{cpu_q * 1e3:.2f} ms, lean {cpu_l * 1e3:.2f} ms; load {out.loads[-1]:.1f}")
    return out


def report_line(w: Workload, res: Rounds) -> str:
    ratio = statistics.median(b / q for b, q in zip(res.xargs, res.qforge, strict=True))
    lean = statistics.median(b / q for b, q in zip(res.xargs, res.lean, strict=True))
    cpu = statistics.median(res.cpu_qforge)
    cpu_lean = statistics.median(res.cpu_lean)
    load = max(res.loads)
    ok = ratio >= w.target and cpu <= CPU_TARGET
    verdict = "UNRELIABLE (load above the cores)" if load > (os.cpu_count() or 1) \
        else ("PASS" if ok else "FAIL")
    return (f"bench: steady pipeline {w.key} ({w.count} jobs, worker already running, "
            f"median of {len(res.qforge)} rounds): qforge {statistics.median(res.qforge):.2f} s "
            f"vs xargs -P 2 {statistics.median(res.xargs):.2f} s, ratio {ratio:.2f} "
            f"(target >= {w.target}; lean worker {lean:.2f}); the worker's CPU per job "
            f"beyond xtb {cpu * 1e3:.2f} ms (target <= {CPU_TARGET * 1e3:.0f} ms; lean "
            f"worker {cpu_lean * 1e3:.2f} ms); load average up to {load:.1f} on "
            f"{os.cpu_count()} cores: {verdict}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--lean":
        lean_worker(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_STEADY_ROUNDS", 3))
    parser.add_argument("--only", choices=[w.key for w in WORKLOADS])
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    compileall.compile_dir(REPO / "controller", quiet=1)
    compileall.compile_dir(REPO / "runner_image", quiet=1)
    xtb = xtb_path()
    lines = []
    with scratch_dir("qforge-steady-", args.dir) as tmp:
        for w in WORKLOADS:
            if args.only and w.key != args.only:
                continue
            lines.append(report_line(w, run_workload(w, args.rounds, tmp, xtb)))
    for line in lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
