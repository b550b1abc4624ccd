"""Benchmark e: the local pipeline's overhead, `qforge worker` vs bare `xargs -P 2`.

Two workloads, as a new user would try them, each a GFN2 optimisation (the default job):
  tiny   60 molecules: water, ammonia, methane (about 10 ms of xtb each when the
         machine is quiet), where the worker's work around each xtb run shows most;
  big    16 molecules: caffeine (24 atoms) and benzene (12 atoms), >= 10 atoms each.
Each workload runs in alternating rounds, qforge first (qforge, baseline, qforge, ...):
  qforge    submit all to a fresh store (not timed), then time the real CLI
            `qforge worker --until-idle --max-concurrent 2` (a subprocess, default poll
            interval) from its start to its exit, interpreter start-up included; every
            job must be COMPLETED.
  baseline  the same xtb command lines (`JobSpec.xtb_args()`, the same flags) in the
            same environment (`xtb_environment()`: OMP_NUM_THREADS=1, ...), each in a
            scratch folder of its own holding its input.xyz, by `xargs -P 2`.
Throughput ratio of a round = baseline time / qforge time; the figure is the median over
the rounds (the machine is shared: a round pair sees about the same load). When the load
average during the rounds exceeds the number of cores, the verdict says UNRELIABLE: other
users' processes then slow the bare xtb runs as much as the worker and hide its fixed
costs (ratios above 1 have been seen that way). Targets: >= 0.8
for the tiny molecules, >= 0.9 for those of >= 10 atoms. The energies of the first qforge
round must equal the bare runs' (1e-6 Eh).

qforge's own modules are byte-compiled first (`compileall`), as `pip install` does: with
PYTHONDONTWRITEBYTECODE set (as on this machine) a source checkout would otherwise be
compiled again at every start, which no installed copy does.

Knobs: --rounds/BENCH_PIPELINE_ROUNDS (5 per side and workload), --only tiny|big,
--dir (or QFORGE_BENCH_DIR).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import MOLECULES, REPO, env_int, log, qforge_command, scratch_dir

from qforge.record import Status
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore, load_result_json
from qforge_runner.harness import xtb_environment

CONCURRENCY = 2
LEAN_WORKER = Path(__file__).resolve().with_name("lean_worker.py")
# The lean worker's two record codecs and how its interpreter is started for each.
LEAN_VARIANTS = {"pydantic": (), "plain": ("-I", "-S")}


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    molecules: tuple[str, ...]
    count: int
    target: float


WORKLOADS = (
    Workload("tiny", "60 tiny molecules (water, ammonia, methane)",
             ("water", "ammonia", "methane"), 60, 0.8),
    Workload("big", "16 molecules of >= 10 atoms (caffeine, benzene)",
             ("caffeine", "benzene"), 16, 0.9),
)


@dataclass
class Rounds:
    qforge: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    around: list[float] = field(default_factory=list)  # worker time per job beside xtb
    cpu_qforge: list[float] = field(default_factory=list)  # CPU s, xtb's included
    cpu_baseline: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average per round
    lean: dict[str, list[float]] = field(default_factory=dict)  # records -> wall times

    def ratios(self) -> list[float]:
        return [b / q for b, q in zip(self.baseline, self.qforge, strict=True)]

    def lean_ratios(self, records: str) -> list[float]:
        return [b / q for b, q in zip(self.baseline, self.lean[records], strict=True)]


def jobs_of(w: Workload) -> list[tuple[str, JobSpec]]:
    built = {name: JobSpec(molecule=MOLECULES[name]) for name in w.molecules}
    return [(w.molecules[i % len(w.molecules)], built[w.molecules[i % len(w.molecules)]])
            for i in range(w.count)]


def xtb_path() -> str:
    path = shutil.which("xtb")
    if path is None:
        raise SystemExit("bench_pipeline: xtb is not on PATH")
    return path


def timed_child(argv: list[str], **popen: Any) -> tuple[float, int, float]:
    """Run a command: (wall seconds, exit code, CPU seconds of it and every descendant
    it waited for — xtb included —, from wait4's rusage: a figure the machine's load
    hardly changes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, proc.returncode, usage.ru_utime + usage.ru_stime


def baseline(jobs: list[tuple[str, JobSpec]], root: Path, xtb: str,
             prefix: tuple[str, ...] = ()) -> tuple[float, float]:
    """The same xtb runs by `xargs -P 2`, one scratch folder each: (wall, CPU) seconds.
    `prefix`: programs that exec xtb, as the runner starts it (setsid, setpriv)."""
    root.mkdir()
    folders = []
    for i, (name, spec) in enumerate(jobs):
        folder = root / f"{i:04d}_{name}"
        folder.mkdir()
        (folder / "input.xyz").write_text(spec.molecule.to_xyz())
        folders.append(str(folder))
    flags = {tuple(spec.xtb_args()) for _, spec in jobs}
    if len(flags) != 1:
        raise SystemExit("bench_pipeline: the jobs should all have the same flags")
    argv = " ".join(shlex.quote(a) for a in (*prefix, xtb, "input.xyz", *flags.pop()))
    script = f'cd "$1" && exec {argv} > xtb.log 2>&1'
    env = xtb_environment(jobs[0][1], xtb)
    listing = root.with_name(root.name + ".folders")
    listing.write_text("\n".join(folders) + "\n")
    with open(listing) as stdin:
        elapsed, code, cpu = timed_child(
            ["xargs", "-P", str(CONCURRENCY), "-n", "1", "sh", "-c", script, "sh"],
            env=env, stdin=stdin)
    if code != 0:
        raise SystemExit(f"bench_pipeline: xargs exited {code}")
    for folder in folders:
        if not (Path(folder) / "xtbopt.xyz").exists():
            raise SystemExit(f"bench_pipeline: baseline xtb failed in {folder}")
    return elapsed, cpu


def baseline_energies(root: Path) -> dict[str, float]:
    energies: dict[str, float] = {}
    for folder in sorted(root.iterdir()):
        name = folder.name.split("_", 1)[1]
        data = json.loads((folder / "xtbout.json").read_text())
        energies.setdefault(name, data["total energy"])
    return energies


def through_qforge(jobs: list[tuple[str, JobSpec]], root: Path
                   ) -> tuple[float, float, JobStore, dict[str, str]]:
    """Submit every job (not timed), then time the real worker until it is idle.
    Returns the wall and CPU seconds (xtb's included), the store and each job id's
    molecule name."""
    store = JobStore(root / "jobs")
    names = {}
    for name, spec in jobs:
        names[store.submit(spec, input_text=spec.molecule.to_xyz()).job_id] = name
    (root / "scratch").mkdir()
    env = dict(os.environ, JOBS_DIR=str(store.root), QFORGE_SCRATCH=str(root / "scratch"))
    argv = [*qforge_command(), "worker", "--until-idle", "--max-concurrent", str(CONCURRENCY)]
    with open(root / "worker.log", "wb") as out:
        elapsed, code, cpu = timed_child(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        sys.stderr.write((root / "worker.log").read_text()[-3000:])
        raise SystemExit(f"bench_pipeline: qforge worker exited {code}")
    return elapsed, cpu, store, names


def through_lean(jobs: list[tuple[str, JobSpec]], root: Path, xtb: str,
                 records: str) -> float:
    """The ceiling: `lean_worker.py` on a folder holding the same jobs (not timed), timed
    from its start to its exit. Returns the wall seconds; every job must have ended."""
    for sub in ("queue", "running", "jobs", "scratch"):
        (root / sub).mkdir(parents=True)
    for i, (_, spec) in enumerate(jobs):
        job = f"{i:04d}"
        (root / "jobs" / job).mkdir()
        (root / "jobs" / job / "input.xyz").write_text(spec.molecule.to_xyz())
        (root / "jobs" / job / "record.json").write_text(json.dumps(
            {"job_id": job, "status": "QUEUED", "args": spec.xtb_args(),
             "updated": time.time()}))
        (root / "queue" / job).touch()
    argv = [sys.executable, *LEAN_VARIANTS[records], str(LEAN_WORKER), str(root), xtb,
            records, str(CONCURRENCY)]
    with open(root / "lean.log", "wb") as out:
        elapsed, code, _ = timed_child(argv, env=xtb_environment(jobs[0][1], xtb),
                                       stdout=out, stderr=subprocess.STDOUT)
    done = sum(json.loads((d / "record.json").read_text())["status"] == "COMPLETED"
               for d in (root / "jobs").iterdir())
    if code != 0 or done != len(jobs):
        sys.stderr.write((root / "lean.log").read_text()[-3000:])
        raise SystemExit(f"bench_pipeline: the lean worker ({records}) exited {code} with "
                         f"{done} of {len(jobs)} jobs COMPLETED")
    return elapsed


def check_qforge_round(store: JobStore, names: dict[str, str], reference: Path | None,
                       elapsed: float) -> float:
    """Every job COMPLETED (and, given the bare runs' folder, with their energies).
    Returns the worker's time per job beside xtb: slot time minus xtb's wall times."""
    records = [rec for rec in store.iter_records() if not isinstance(rec, Exception)]
    bad = [f"{rec.job_id}: {rec.status.value} {rec.error}" for rec in records
           if rec.status is not Status.COMPLETED]
    if bad or len(records) != len(names):
        raise SystemExit(f"bench_pipeline: {len(records) - len(bad)} of {len(names)} jobs "
                         f"COMPLETED: {bad[:5]}")
    if reference is not None:
        ref = baseline_energies(reference)
        for rec in records:
            name = names[rec.job_id]
            report = load_result_json(store.layout.job_dir(rec.job_id)) or {}
            energy = (report.get("result") or {}).get("energy")
            if not isinstance(energy, float) or abs(energy - ref[name]) > 1e-6:
                raise SystemExit(f"bench_pipeline: {rec.job_id} ({name}): energy "
                                 f"{energy} vs bare xtb {ref[name]}")
        log(f"energies equal the bare xtb runs (1e-6 Eh) for all {len(records)} jobs")
    xtb_s = sum(rec.result.wall_time for rec in records if rec.result is not None)
    return (elapsed * CONCURRENCY - xtb_s) / len(records)


def run_workload(w: Workload, rounds: int, tmp: Path, xtb: str) -> Rounds:
    jobs = jobs_of(w)
    out = Rounds()
    for r in range(rounds):
        q, cpu_q, store, names = through_qforge(jobs, tmp / f"{w.key}-qforge{r}")
        load_q = os.getloadavg()[0]
        b, cpu_b = baseline(jobs, tmp / f"{w.key}-baseline{r}", xtb)
        for records in LEAN_VARIANTS:
            out.lean.setdefault(records, []).append(
                through_lean(jobs, tmp / f"{w.key}-lean-{records}{r}", xtb, records))
        out.cpu_qforge.append(cpu_q)
        out.cpu_baseline.append(cpu_b)
        load_b = os.getloadavg()[0]
        reference = tmp / f"{w.key}-baseline{r}" if r == 0 else None
        out.around.append(check_qforge_round(store, names, reference, q))
        out.qforge.append(q)
        out.baseline.append(b)
        out.loads.extend((load_q, load_b))
        log(f"{w.key} round {r + 1}: qforge {q:.2f} s (load {load_q:.1f}), xargs {b:.2f} s "
            f"(load {load_b:.1f}): ratio {b / q:.2f}; CPU {cpu_q:.2f} s vs {cpu_b:.2f} s; "
            f"the worker beside xtb {out.around[-1] * 1e3:.1f} ms per job; lean worker "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in out.lean.items()))
    return out


def idle_worker(root: Path) -> tuple[float, float]:
    """Wall and CPU time of `qforge worker --until-idle` on an empty store: the
    interpreter's start, the imports, the start-up pass and the exit, which every run
    pays once."""
    root.mkdir()
    env = dict(os.environ, JOBS_DIR=str(root / "jobs"))
    wall, code, cpu = timed_child([*qforge_command(), "worker", "--until-idle"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit(f"bench_pipeline: an idle qforge worker exited {code}")
    return wall, cpu


# A new interpreter that imports pydantic and builds one frozen model, as any worker
# validating its records must before its first launch.
PYDANTIC_START = ("from pydantic import BaseModel, ConfigDict\n"
                  "class Record(BaseModel):\n"
                  "    model_config = ConfigDict(frozen=True, extra='forbid')\n"
                  "    job_id: str\n")


def interpreter_costs() -> dict[str, float]:
    """CPU seconds (medians of 5) of a bare interpreter start and of one that imports
    pydantic and builds a model: what any Python worker, and any pydantic one, pays."""
    costs = {}
    for key, argv in (("bare", [sys.executable, "-I", "-S", "-c", "pass"]),
                      ("pydantic", [sys.executable, "-c", PYDANTIC_START])):
        runs = [timed_child(argv)[2] for _ in range(5)]
        costs[key] = statistics.median(runs)
    return costs


def report_line(w: Workload, res: Rounds, fixed: tuple[float, float]) -> str:
    ratio = statistics.median(res.ratios())
    q, b = statistics.median(res.qforge), statistics.median(res.baseline)
    verdict = "met" if ratio >= w.target else "MISSED"
    load, cores = statistics.median(res.loads), os.cpu_count() or 1
    if load > cores:
        # Other users' processes slow the bare xtb runs as much as the worker and hide
        # its fixed costs: such a figure says little either way.
        verdict += (f" (UNRELIABLE: load average {load:.1f} on {cores} cores during the "
                    "rounds; rerun on a quiet machine)")
    by_round = ", ".join(f"{x:.2f}" for x in res.ratios())
    extra = (statistics.median(res.cpu_qforge) - statistics.median(res.cpu_baseline)
             - fixed[1]) / w.count
    return (f"bench: pipeline {w.title}, qforge worker --until-idle --max-concurrent "
            f"{CONCURRENCY} vs xargs -P {CONCURRENCY} bare xtb: throughput ratio {ratio:.2f} "
            f"(target >= {w.target}): {verdict}; median of {len(res.qforge)} alternating "
            f"rounds (by round: {by_round}); qforge {q:.2f} s ({w.count / q:.1f} jobs/s), "
            f"baseline {b:.2f} s ({w.count / b:.1f} jobs/s); the worker's time beside each "
            f"xtb run {statistics.median(res.around) * 1e3:.1f} ms per job (start-up "
            f"included; an idle worker's start and exit alone take {fixed[0]:.2f} s, "
            f"{fixed[1] * 1e3:.0f} ms CPU); CPU (xtb's included) qforge "
            f"{statistics.median(res.cpu_qforge):.2f} s vs baseline "
            f"{statistics.median(res.cpu_baseline):.2f} s, i.e. the worker's own "
            f"{extra * 1e3:.1f} ms per job beyond the idle start; "
            f"load average {os.getloadavg()[0]:.1f}")


def ceiling_line(w: Workload, res: Rounds, costs: dict[str, float]) -> str:
    """What the leanest Python worker reaches in the same rounds, with pydantic records
    and without: the ceiling for qforge's figure."""
    lean = {k: statistics.median(res.lean_ratios(k)) for k in LEAN_VARIANTS}
    ours = statistics.median(res.ratios())
    reach = {k: "reaches it" if v >= w.target else "misses it" for k, v in lean.items()}
    return (f"bench: pipeline ceiling, {w.title}: the leanest Python worker "
            f"(bench/lean_worker.py: the same claims, fsynced records and xtb runs, nothing "
            f"else) vs xargs -P {CONCURRENCY}: ratio {lean['pydantic']:.2f} with its records "
            f"through one pydantic model ({reach['pydantic']}), {lean['plain']:.2f} plain "
            f"under python -I -S ({reach['plain']}); target >= {w.target}; qforge's "
            f"{ours:.2f} is {ours / lean['pydantic']:.2f} of the pydantic ceiling; median of "
            f"{len(res.qforge)} alternating rounds; a new interpreter costs "
            f"{costs['bare'] * 1e3:.0f} ms CPU, one importing pydantic and building a "
            f"model {costs['pydantic'] * 1e3:.0f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=env_int("BENCH_PIPELINE_ROUNDS", 5))
    p.add_argument("--only", choices=[w.key for w in WORKLOADS], default=None)
    p.add_argument("--dir", default=None, help="where the stores and xtb folders go")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    xtb = xtb_path()
    for package in ("controller", "runner_image"):  # as `pip install` leaves them
        compileall.compile_dir(str(REPO / package), quiet=1)
    chosen = [w for w in WORKLOADS if args.only in (None, w.key)]
    with scratch_dir("qforge-bench-pipeline-", args.dir) as tmp:
        # One warm-up of each side (xtb's and Python's files into the page cache).
        warm = jobs_of(chosen[0])[:4]
        baseline(warm, tmp / "warm-baseline", xtb)
        through_qforge(warm, tmp / "warm-qforge")
        idle = [idle_worker(tmp / f"idle{i}") for i in range(3)]
        fixed = (statistics.median(i[0] for i in idle), statistics.median(i[1] for i in idle))
        log(f"an idle worker (empty store) starts and exits in {fixed[0]:.2f} s, "
            f"{fixed[1] * 1e3:.0f} ms CPU (medians of 3)")
        costs = interpreter_costs()
        for w in chosen:
            res = run_workload(w, args.rounds, tmp, xtb)
            print(report_line(w, res, fixed), flush=True)
            print(ceiling_line(w, res, costs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
