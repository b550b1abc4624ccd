"""Benchmark b: 300 small molecules through the real `qforge worker` vs bare `xargs -P 2`.

Molecules: water, methane, ammonia, methanol, ethane, acetone, benzene, caffeine,
cycled to --count, each a GFN2 optimisation (the default job).
  qforge    submit all to a fresh store (not timed), then time
            `qforge worker --max-concurrent 2 --until-idle --poll-interval 1` (the real
            CLI, a subprocess) from its start to its exit; every job must be COMPLETED.
  baseline  the same xtb runs, same flags (`JobSpec.xtb_args()`) and environment
            (`xtb_environment()`: OMP_NUM_THREADS=1, ...) as the harness, by
            `xargs -P 2` over one folder per molecule.
The two alternate (baseline, qforge, baseline, qforge, ...) and the best of each is
kept, so load from elsewhere on the machine hits both alike. Throughput ratio =
baseline time / qforge time; target >= 0.9. Before that, each molecule is run once
alone to give its xtb wall time and peak RSS, and the energies of the two ways are
compared (they must agree to 1e-6 Eh).

Knobs: --count/BENCH_PIPELINE_COUNT (300), --rounds/BENCH_PIPELINE_ROUNDS (2),
--dir (or QFORGE_BENCH_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import MOLECULES, env_int, log, qforge_command, scratch_dir

from controller.record import Status
from controller.store.jobstore import JobStore, load_result_json
from runner_image.harness import xtb_environment
from runner_image.spec import JobSpec

TARGET = 0.9
CONCURRENCY = 2


def specs(count: int) -> list[tuple[str, JobSpec]]:
    names = list(MOLECULES)
    built = {name: JobSpec(molecule=text) for name, text in MOLECULES.items()}
    return [(names[i % len(names)], built[names[i % len(names)]]) for i in range(count)]


def xtb_path() -> str:
    path = shutil.which("xtb")
    if path is None:
        raise SystemExit("bench_pipeline: xtb is not on PATH")
    return path


def one_alone(spec: JobSpec, folder: Path, xtb: str) -> tuple[float, int | None]:
    """xtb once, alone: (wall seconds, peak RSS in kB or None). The RSS comes from
    /usr/bin/time when it is installed: a child forked from this Python process would
    report this process's RSS as its own peak."""
    folder.mkdir(parents=True)
    (folder / "input.xyz").write_text(spec.molecule.to_xyz())
    timer = shutil.which("time", path="/usr/bin:/bin")
    prefix = [timer, "-f", "%M", "-o", str(folder / "rss")] if timer else []
    with open(folder / "xtb.log", "wb") as out:
        start = time.perf_counter()
        code = subprocess.run([*prefix, xtb, "input.xyz", *spec.xtb_args()], cwd=folder,
                              env=xtb_environment(spec, xtb), stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode
        wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bench_pipeline: xtb failed in {folder} (see xtb.log)")
    rss = int((folder / "rss").read_text().split()[-1]) if timer else None
    return wall, rss


def cpu_seconds() -> float:
    """User + system CPU time of every waited-for descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def baseline(jobs: list[tuple[str, JobSpec]], root: Path, xtb: str) -> float:
    """The same xtb runs by `xargs -P 2`, one folder each. Returns the wall time."""
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
    argv = " ".join(shlex.quote(a) for a in (xtb, "input.xyz", *flags.pop()))
    script = f'cd "$1" && exec {argv} > xtb.log 2>&1'
    env = xtb_environment(jobs[0][1], xtb)
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(CONCURRENCY), "-n", "1", "sh", "-c", script, "sh"],
                   input="\n".join(folders) + "\n", text=True, env=env, check=True)
    elapsed = time.perf_counter() - start
    for folder in folders:
        if not (Path(folder) / "xtbopt.xyz").exists():
            raise SystemExit(f"bench_pipeline: baseline xtb failed in {folder}")
    return elapsed


def baseline_energies(root: Path) -> dict[str, float]:
    energies: dict[str, float] = {}
    for folder in sorted(root.iterdir()):
        name = folder.name.split("_", 1)[1]
        data = json.loads((folder / "xtbout.json").read_text())
        energies.setdefault(name, data["total energy"])
    return energies


def through_qforge(jobs: list[tuple[str, JobSpec]], root: Path
                   ) -> tuple[float, JobStore, dict[str, str]]:
    """Submit every job (not timed), then time the real worker until it is idle.
    Returns the time, the store and each job id's molecule name."""
    store = JobStore(root / "jobs")
    names = {}
    for name, spec in jobs:
        names[store.submit(spec, input_text=spec.molecule.to_xyz()).job_id] = name
    (root / "scratch").mkdir()
    env = dict(os.environ, JOBS_DIR=str(store.root), WORKDIR=str(root / "scratch"))
    argv = [*qforge_command(), "worker", "--max-concurrent", str(CONCURRENCY),
            "--until-idle", "--poll-interval", "1"]
    with open(root / "worker.log", "wb") as out:
        start = time.perf_counter()
        code = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False).returncode
        elapsed = time.perf_counter() - start
    if code != 0:
        sys.stderr.write((root / "worker.log").read_text()[-3000:])
        raise SystemExit(f"bench_pipeline: qforge worker exited {code}")
    return elapsed, store, names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=env_int("BENCH_PIPELINE_COUNT", 300))
    p.add_argument("--rounds", type=int, default=env_int("BENCH_PIPELINE_ROUNDS", 2))
    p.add_argument("--dir", default=None, help="where the stores and xtb folders go")
    args = p.parse_args()
    jobs = specs(args.count)
    xtb = xtb_path()

    with scratch_dir("qforge-bench-pipeline-", args.dir) as tmp:
        # Each molecule alone (this also warms up xtb's files in the page cache).
        for name, text in MOLECULES.items():
            spec = JobSpec(molecule=text)
            runs = [one_alone(spec, tmp / "alone" / f"{name}{k}", xtb) for k in range(3)]
            wall = sorted(r[0] for r in runs)[1]
            rss = [r[1] for r in runs if r[1] is not None]
            peak = f"peak RSS {max(rss) / 1024:.0f} MB" if rss else "peak RSS n/a"
            log(f"{name} ({spec.molecule.natoms} atoms): xtb alone {wall * 1e3:.0f} ms "
                f"(median of 3), {peak}")

        base_times: list[float] = []
        qf_times: list[float] = []
        base_cpu: list[float] = []
        qf_cpu: list[float] = []
        gaps: list[float] = []
        completed = 0
        for r in range(args.rounds):
            cpu0 = cpu_seconds()
            b = baseline(jobs, tmp / f"baseline{r}", xtb)
            base_cpu.append(cpu_seconds() - cpu0)
            base_times.append(b)
            log(f"round {r + 1}: xargs -P {CONCURRENCY}: {len(jobs)} xtb runs in {b:.2f} s "
                f"({base_cpu[-1]:.1f} CPU s); load average {os.getloadavg()[0]:.1f}")
            cpu0 = cpu_seconds()
            q, store, names = through_qforge(jobs, tmp / f"qforge{r}")
            qf_cpu.append(cpu_seconds() - cpu0)
            qf_times.append(q)
            records = [rec for rec in store.iter_records() if not isinstance(rec, Exception)]
            completed = sum(rec.status is Status.COMPLETED for rec in records)
            # A slot's time per job, split: xtb itself (its wall time in the result) and
            # the rest (claim, record writes, result parsing, artifacts, launch).
            xtb_s = sum((rec.result or {}).get("wall_time", 0.0) for rec in records)
            slot_s = q * CONCURRENCY
            gaps.append((slot_s - xtb_s) / len(jobs))
            log(f"round {r + 1}: per job: xtb {xtb_s / len(jobs) * 1e3:.0f} ms, the worker "
                f"around it {gaps[-1] * 1e3:.0f} ms (slot time {slot_s / len(jobs) * 1e3:.0f} ms)")
            log(f"round {r + 1}: qforge worker: {completed}/{len(jobs)} COMPLETED in {q:.2f} s "
                f"({qf_cpu[-1]:.1f} CPU s); load average {os.getloadavg()[0]:.1f}")
            if completed != len(jobs):
                bad = [f"{rec.job_id}: {rec.status.value} {rec.error}" for rec in records
                       if rec.status is not Status.COMPLETED][:5]
                raise SystemExit(f"bench_pipeline: only {completed} of {len(jobs)} jobs "
                                 f"COMPLETED: {bad}")
            if r == 0:
                # Same flags, same environment: the same energies as the bare runs.
                ref = baseline_energies(tmp / "baseline0")
                for rec in records:
                    name = names[rec.job_id]
                    report = load_result_json(store.layout.job_dir(rec.job_id)) or {}
                    energy = (report.get("result") or {}).get("energy")
                    if energy is None or abs(energy - ref[name]) > 1e-6:
                        raise SystemExit(f"bench_pipeline: {rec.job_id} ({name}): energy "
                                         f"{energy} vs bare xtb {ref[name]}")
                log(f"energies equal the bare xtb runs (1e-6 Eh) for all {len(records)} jobs")

    best_b, best_q = min(base_times), min(qf_times)
    ratio = best_b / best_q
    overhead = (best_q - best_b) * CONCURRENCY / len(jobs)
    verdict = "ok" if ratio >= TARGET else "MISSED"
    by_round = ", ".join(f"{b / q:.2f}" for b, q in zip(base_times, qf_times, strict=True))
    print(f"bench: pipeline {len(jobs)} molecules, qforge worker --max-concurrent "
          f"{CONCURRENCY}: {best_q:.2f} s ({len(jobs) / best_q:.1f} jobs/s, "
          f"{completed}/{len(jobs)} COMPLETED) vs xargs -P {CONCURRENCY} bare xtb "
          f"{best_b:.2f} s ({len(jobs) / best_b:.1f} jobs/s) (throughput ratio {ratio:.2f}, "
          f"target >= {TARGET}, {verdict}); best of {args.rounds} alternating rounds "
          f"(ratio by round: {by_round}); "
          f"per job {overhead * 1e3:+.0f} ms wall ({min(gaps) * 1e3:.0f} ms of worker time "
          f"around each xtb run); CPU {min(qf_cpu):.1f} s vs {min(base_cpu):.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
