"""Benchmark: one Prometheus scrape of a worker's /metrics, big store vs empty store.

Two stores side by side in one temporary folder (same filesystem): `empty`, and `full`
with 100,000 COMPLETED jobs (written as bench_store writes them: real records). Each gets
the metrics a `qforge worker --metrics-port` serves (qforge.metrics.process), on its
own real HTTP endpoint on loopback; the benchmark GETs /metrics from both, interleaved,
and reports the median of many scrapes. The store gauges come from the store's index
(the queue and running markers, or `JobStore.queries.counts()`), so the ratio full/empty should
stay near 1; for scale, the naive gauge (read every metadata.json) is timed once.

Knobs: --finished/BENCH_METRICS_FINISHED (100,000), --reps/BENCH_METRICS_REPS (300),
--dir (or QFORGE_BENCH_DIR) for where the stores are built.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

from bench_store import build_store, naive_scan
from benchlib import env_int, log, median, ms, scratch_dir, timed, write_file

from qforge.metrics.process import ProcessMetrics
from qforge.record import Status
from qforge.settings import Settings
from qforge.store.jobstore import JobStore
from qforge.store.layout import DoneKey
from tests.metrics import Scrape

TARGET = 1.5


def index_finished(root: Path) -> None:
    """The done markers `JobStore.queue.finish` leaves, for jobs written directly (one each)."""
    store = JobStore(root)
    folder = store.layout.done(Status.COMPLETED.value)
    folder.mkdir(parents=True, exist_ok=True)
    for i, job_id in enumerate(store.job_ids()):
        write_file(folder / DoneKey(1_764_000_000_000_000_000 + i, job_id).name, b"")


def serve(root: Path) -> tuple[ProcessMetrics, str]:
    metrics = ProcessMetrics(Settings(jobs_dir=root), "worker", store=JobStore(root))
    port = metrics.serve("127.0.0.1", 0)
    return metrics, f"http://127.0.0.1:{port}/metrics"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return str(answer.read().decode())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--finished", type=int, default=env_int("BENCH_METRICS_FINISHED", 100_000))
    p.add_argument("--reps", type=int, default=env_int("BENCH_METRICS_REPS", 300))
    p.add_argument("--dir", default=None, help="where to build the stores")
    args = p.parse_args()
    with scratch_dir("qforge-bench-metrics-", args.dir) as tmp:
        roots = {"empty": tmp / "empty", "full": tmp / "full"}
        build_store(roots["empty"], 0, 0)
        t0 = time.perf_counter()
        build_store(roots["full"], args.finished, 0)
        index_finished(roots["full"])
        log(f"full store: {args.finished} finished jobs written in "
            f"{time.perf_counter() - t0:.1f} s")
        served = {name: serve(root) for name, root in roots.items()}
        try:
            urls = {name: url for name, (_, url) in served.items()}
            for name, url in urls.items():  # the same answer shape from both
                scrape = Scrape(get(url))
                completed = scrape.value("qforge_jobs", status="completed")
                log(f"{name}: {len(scrape.samples)} samples, completed jobs {completed:g}")
                if completed != (args.finished if name == "full" else 0):
                    raise SystemExit(f"bench_metrics: {name} counts {completed:g} completed")
                for _ in range(20):  # warm-up
                    get(url)
            samples: dict[str, list[float]] = {name: [] for name in urls}
            order = list(urls)
            for rep in range(args.reps):
                shift = rep % len(order)
                for name in order[shift:] + order[:shift]:
                    samples[name].append(timed(lambda u=urls[name]: get(u)))
            result = {name: median(v) for name, v in samples.items()}
        finally:
            for metrics, _ in served.values():
                metrics.close()
        naive = timed(lambda: naive_scan(roots["full"]))
    ratio = result["full"] / result["empty"]
    log(f"scrape median: empty {ms(result['empty'])}, full {ms(result['full'])}; "
        f"a naive gauge reading every record: {ms(naive)}")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"bench: metrics scrape {args.finished // 1000}k finished vs empty store "
          f"{ratio:.2f}x ({ms(result['full'])} vs {ms(result['empty'])}, "
          f"{args.reps} scrapes each; target <= {TARGET}x): {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
