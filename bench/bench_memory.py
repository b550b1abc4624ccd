"""Benchmark c: the worker's memory with 10,000 queued jobs.

A store with --queued (10,000) QUEUED jobs (small molecules cycled, written as
`JobStore.submit` leaves them), then the real `qforge worker --max-concurrent 3` on
it. While it works through the queue, /proc/<pid>/status is sampled (VmRSS) until
--jobs (200) jobs are done or --max-seconds pass, whichever is first, and not before
--min-seconds; then its peak RSS (VmHWM) is read and it gets SIGTERM (it must exit 0,
its running jobs going back to the queue). Only the worker process is measured, not
its xtb children. Baselines in the same run: a bare `python -c "import
qforge.cli.main"` and the same worker idle on an empty store. Target < 150 MB.

Knobs: --queued/BENCH_MEMORY_QUEUED, --jobs/BENCH_MEMORY_JOBS,
--min-seconds/--max-seconds, --dir (or QFORGE_BENCH_DIR).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    MOLECULES,
    env_float,
    env_int,
    log,
    median,
    qforge_command,
    rss_kb,
    scratch_dir,
    write_queued_job,
)

from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore

TARGET_MB = 150.0


def build(store: JobStore, count: int) -> None:
    store.ensure()
    specs = [JobSpec(molecule=text) for text in MOLECULES.values()]
    base_ns = time.time_ns()
    for i in range(count):
        spec = specs[i % len(specs)]
        jid = f"{spec.molecule.formula.lower()}_20261129_{i // 1000:06d}_{i % 1000:04d}"
        write_queued_job(store, jid, spec, base_ns + i)
        if i and i % 2500 == 0:
            log(f"{i} queued jobs written")


def bare_import_kb() -> int:
    """Peak RSS of an interpreter that only imports the CLI."""
    code = ("import qforge.cli.main\n"
            "print([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmHWM:')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def done_count(store: JobStore, total: int) -> int:
    """Jobs no longer queued or running: two listings, no record reads."""
    return total - len(os.listdir(store.layout.queue)) - len(os.listdir(store.layout.running))


def start_worker(store: JobStore, scratch: Path, log_path: Path,
                 concurrency: int) -> subprocess.Popen[bytes]:
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, JOBS_DIR=str(store.root), QFORGE_SCRATCH=str(scratch))
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [*qforge_command(), "worker", "--max-concurrent", str(concurrency)],
            env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes], log_path: Path) -> float:
    """SIGTERM; it must exit 0. Returns how long it took to stop."""
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemExit("bench_memory: the worker did not stop within 120 s of SIGTERM") \
            from None
    if code != 0:
        sys.stderr.write(log_path.read_text()[-3000:])
        raise SystemExit(f"bench_memory: the worker exited {code} after SIGTERM")
    return time.perf_counter() - start


def kill(proc: subprocess.Popen[bytes]) -> None:
    """The worker this benchmark started, if still there (after an error)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def watch(proc: subprocess.Popen[bytes], store: JobStore, args: argparse.Namespace,
          worker_log: Path) -> tuple[int, int, float, list[int]]:
    """Sample the worker's RSS until enough jobs are done. Returns (VmHWM kB, jobs
    done, seconds, VmRSS samples in kB)."""
    start = time.perf_counter()
    samples: list[int] = []
    next_note = 5.0
    while True:
        time.sleep(0.25)
        elapsed = time.perf_counter() - start
        if proc.poll() is not None:
            sys.stderr.write(worker_log.read_text()[-3000:])
            raise SystemExit(f"bench_memory: the worker exited {proc.returncode} early")
        rss, hwm = rss_kb(proc.pid)
        samples.append(rss)
        done = done_count(store, args.queued)
        if elapsed >= next_note:
            log(f"{elapsed:4.0f} s: {done} jobs done, VmRSS {rss / 1024:.1f} MB, "
                f"VmHWM {hwm / 1024:.1f} MB")
            next_note += 5
        if elapsed >= args.max_seconds or (done >= args.jobs and elapsed >= args.min_seconds):
            _, hwm = rss_kb(proc.pid)
            return hwm, done, elapsed, samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queued", type=int, default=env_int("BENCH_MEMORY_QUEUED", 10_000))
    p.add_argument("--jobs", type=int, default=env_int("BENCH_MEMORY_JOBS", 200),
                   help="stop once this many jobs are done")
    p.add_argument("--min-seconds", type=float, default=env_float("BENCH_MEMORY_MIN_S", 20))
    p.add_argument("--max-seconds", type=float, default=env_float("BENCH_MEMORY_MAX_S", 120))
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--dir", default=None, help="where the store goes")
    args = p.parse_args()

    bare = bare_import_kb()
    log(f"bare `python -c 'import qforge.cli.main'`: peak RSS {bare / 1024:.1f} MB")

    with scratch_dir("qforge-bench-memory-", args.dir) as tmp:
        # The worker idle on an empty store, for comparison.
        empty = JobStore(tmp / "empty")
        empty.ensure()
        proc = start_worker(empty, tmp / "scratch", tmp / "idle.log", args.concurrency)
        try:
            time.sleep(3)
            _, idle_hwm = rss_kb(proc.pid)
            stop_worker(proc, tmp / "idle.log")
        finally:
            kill(proc)
        log(f"worker idle on an empty store: peak RSS {idle_hwm / 1024:.1f} MB")

        store = JobStore(tmp / "jobs")
        t0 = time.perf_counter()
        build(store, args.queued)
        log(f"store with {args.queued} queued jobs built in {time.perf_counter() - t0:.1f} s")

        worker_log = tmp / "worker.log"
        proc = start_worker(store, tmp / "scratch", worker_log, args.concurrency)
        try:
            hwm, done, elapsed, samples = watch(proc, store, args, worker_log)
            took = stop_worker(proc, worker_log)
        finally:
            kill(proc)
        log(f"SIGTERM: the worker stopped cleanly in {took:.1f} s; "
            f"{len(os.listdir(store.layout.queue))} jobs still queued")
        steady = samples[len(samples) // 4:] or samples  # after start-up
        log(f"VmRSS samples: median {median(steady) / 1024:.1f} MB, "
            f"max {max(samples) / 1024:.1f} MB ({len(samples)} samples)")

    peak_mb = hwm / 1024
    verdict = "ok" if peak_mb < TARGET_MB else "MISSED"
    print(f"bench: worker memory, {args.queued} queued, --max-concurrent {args.concurrency}, "
          f"{done} jobs done in {elapsed:.0f} s: peak RSS {peak_mb:.1f} MB "
          f"(VmRSS median {median(steady) / 1024:.1f} MB) vs bare "
          f"`import qforge.cli.main` {bare / 1024:.1f} MB "
          f"(ratio {hwm / bare:.2f}; idle worker on an empty store {idle_hwm / 1024:.1f} MB) "
          f"(target < {TARGET_MB:.0f} MB, {verdict})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
