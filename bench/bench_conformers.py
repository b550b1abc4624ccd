"""Benchmark (issue 24): 1,000 SMILES x 10 conformers submitted in one call.

One `qforge submit lib.smi --conformers 10` in a new process, against the baseline
measured in the same run: the same 1,000 SMILES submitted without --conformers (one
ETKDGv3 embedding and MMFF94 clean-up each, one job each) into a fresh store. Both sides
are whole `qforge submit` processes (reading, embedding, validating, writing and
fsyncing every job); the baseline runs first, then the ensemble, alternately for
BENCH_CONFORMERS_ROUNDS rounds, and the medians are compared.

Printed: molecules/s and conformer jobs/s of the ensemble submission, the baseline's
jobs/s, the peak RSS of both (the child's ru_maxrss, from wait4), and the ratio of the
time per *job* (ensemble / baseline). Targets: a conformer job costs at most 1.5x a
single-structure job (EmbedMultipleConfs shares the molecule's set-up between its
conformers, but each is still embedded, cleaned with MMFF94, compared with those kept,
and written as its own job), and the peak RSS stays below 300 MB (what bench_submit
holds 100,000 molecules in).

The library: 1,000 distinct acyclic and ring molecules of 4 to 12 heavy atoms with
rotatable bonds (two fragments joined by a linker), so that most give several conformers.

Knobs (environment): BENCH_CONFORMERS_N (1000), BENCH_CONFORMERS_K (10),
BENCH_CONFORMERS_ROUNDS (1), QFORGE_BENCH_DIR (where stores are built).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import env_int, log, median, qforge_command, scratch_dir

TIME_RATIO_TARGET = 1.5
RSS_TARGET_MB = 300.0
HEADS = ("C", "CC", "CCC", "CC(C)", "OC", "NC", "FC", "C1CC1", "c1ccccc1", "OCC", "C=CC",
         "ClC", "N#CC", "CSC", "COC", "CN(C)C")
LINKERS = ("CC", "CCC", "OCC", "CCO", "CNC", "CC(=O)", "C(=O)N", "CCCC", "COC", "CSC")
TAILS = ("C", "O", "N", "F", "CC", "OC", "C(=O)O", "C#N", "Cl", "CCO", "C(F)(F)F", "S",
         "N(C)C", "c1ccncc1", "C=C")


def library(n: int) -> list[str]:
    from rdkit import Chem

    seen: dict[str, str] = {}
    for head, link, tail in itertools.product(HEADS, LINKERS, TAILS):
        smiles = head + link + tail
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            continue
        seen.setdefault(Chem.MolToSmiles(mol), smiles)
        if len(seen) == n:
            break
    if len(seen) < n:
        sys.exit(f"only {len(seen)} distinct molecules in the library's pattern")
    return list(seen.values())


def run_submit(smi: Path, jobs: Path, *extra: str) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, the first line of stdout) of one `qforge submit`."""
    cmd = [*qforge_command(), "--jobs-dir", str(jobs), "submit", str(smi), "--group",
           "bench", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"qforge submit failed: {err.strip()}")
    first = out.strip().splitlines()[0] if out.strip() else ""
    log(f"{elapsed:.1f} s, {usage.ru_maxrss / 1024:.0f} MB: {first}")
    return elapsed, usage.ru_maxrss / 1024, first


def jobs_in(line: str) -> int:
    """The number of jobs a submit's summary line names ("Submitted 8,412 conformer
    jobs of 1,000 molecules ..." or "Submitted 1000 molecules ...")."""
    return int(line.split()[1].replace(",", ""))


def main() -> None:
    n = env_int("BENCH_CONFORMERS_N", 1000)
    k = env_int("BENCH_CONFORMERS_K", 10)
    rounds = max(1, env_int("BENCH_CONFORMERS_ROUNDS", 1))
    with scratch_dir("conformers") as root:
        smi = root / "lib.smi"
        smi.write_text("".join(f"{s} m{i:04d}\n" for i, s in enumerate(library(n))))
        base_t, base_rss, ens_t, ens_rss = [], [], [], []
        base_jobs = ens_jobs = 0
        for r in range(rounds):
            log(f"round {r + 1}: baseline ({n} SMILES, no conformers)")
            t, rss, line = run_submit(smi, root / f"base{r}")
            base_t.append(t)
            base_rss.append(rss)
            base_jobs = jobs_in(line)
            log(f"round {r + 1}: {n} SMILES x {k} conformers")
            t, rss, line = run_submit(smi, root / f"ens{r}", "--conformers", str(k))
            ens_t.append(t)
            ens_rss.append(rss)
            ens_jobs = jobs_in(line)
            for side in ("base", "ens"):
                shutil.rmtree(root / f"{side}{r}", ignore_errors=True)
        tb, te = median(base_t), median(ens_t)
        ratio = (te / ens_jobs) / (tb / base_jobs)
        rss = max(ens_rss)
        ok = ratio <= TIME_RATIO_TARGET and rss <= RSS_TARGET_MB
        load = os.getloadavg()[0]
        busy = (f" (UNRELIABLE: load {load:.1f} on {os.cpu_count()} cores)"
                if load > (os.cpu_count() or 1) else "")
        print(f"bench: submit {n} SMILES x {k} conformers in one call: {te:.1f} s, "
              f"{n / te:.1f} molecules/s, {ens_jobs} conformer jobs ({ens_jobs / te:.1f}/s), "
              f"peak RSS {rss:.0f} MB; baseline (same SMILES, no conformers) {tb:.1f} s, "
              f"{base_jobs / tb:.1f} jobs/s, peak RSS {max(base_rss):.0f} MB; time per job "
              f"ratio {ratio:.2f} (target <= {TIME_RATIO_TARGET}), RSS target <= "
              f"{RSS_TARGET_MB:.0f} MB: {'met' if ok else 'NOT MET'}{busy}")


if __name__ == "__main__":
    main()
