"""Benchmarks b, c, d: the store at campaign scale, through the real `qforge` command.

Two stores, built once and cached under the temp folder (keyed by the record model's
own dump, so a change to the record rebuilds them):
  full   100,000 finished jobs (COMPLETED, in groups `done-0`..`done-9` of 10,000) plus
         1,000 queued jobs (groups `queued-0`..`queued-9` of 100);
  small  only the same 1,000 queued jobs.
Both are written directly (metadata.json from a real JobRecord dump, input.xyz, and the
index entries JobStore.submit / JobStore.queue.finish leave: queue or done marker, group
marker, dedup claim), then brought in line by one IndexKeeper.sync().

b. `qforge list --status QUEUED`, `qforge status`, `qforge list --group queued-3` (100
   jobs), each a new process, full vs small, interleaved; median of --reps runs each.
   Target: full within 1.5x of small.
c. a worker restart on the full store: from starting `qforge worker` to its first
   "Starting execution for job" line (xtb is a stand-in that sleeps, so the job is
   still running when the worker is stopped; SIGTERM puts it back in the queue and the
   store is as before). Baseline: the same on the small store. Target <= 2 s. The full
   re-read the previous start-up did (IndexKeeper.rebuild) is timed for comparison.
d. `qforge export --group done-3 --format csv` (10,000 jobs) to a file, a new process.
   Baseline: a bare Python loop in a new process that reads the same metadata.json
   files with json and writes the same columns with csv. Target <= 10 s.

Knobs: --finished, --queued, --reps, --dir (or QFORGE_BENCH_DIR), --rebuild (ignore the
cache).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    MOLECULES,
    env_int,
    log,
    median,
    ms,
    qforge_command,
    scratch_dir,
    timed,
    write_file,
)

from qforge.record import JobRecord, Placement, Status
from qforge.spec import JobSpec
from qforge.store.dedup import claim_name
from qforge.store.index import IndexKeeper
from qforge.store.jobstore import JobStore, finished_ns
from qforge.store.layout import DoneKey, QueueKey
from qforge_runner.molecule import parse_xyz

TARGET_RATIO = 1.5
TARGET_START = 2.0
TARGET_EXPORT = 10.0
GROUP_SIZE_DONE = 10_000
GROUP_SIZE_QUEUED = 100
HOLES = {"id": "placeholderid00000", "group": "placeholdergroup00",
         "hash": "f" * 64, "ns": "987654321987654321"}


def templates() -> tuple[bytes, bytes, str]:
    """metadata.json of a real COMPLETED and a real QUEUED record with holes for the
    job id, group, input hash and created_ns; and the input.xyz text."""
    xyz = MOLECULES["water"]
    spec = JobSpec(molecule=parse_xyz(xyz))
    now = "2026-11-28T13:30:39.123456Z"
    queued = JobRecord(job_id=HOLES["id"], status=Status.QUEUED, created_at=now,
                       updated_at=now, created_ns=int(HOLES["ns"]), spec=spec,
                       group=HOLES["group"], input_hash=HOLES["hash"])
    done = queued.evolve(
        status=Status.COMPLETED, started_at=now, finished_at="2026-11-28T13:30:39.623456Z",
        updated_at="2026-11-28T13:30:39.623456Z",
        attempts=1,
        placement=Placement(executor="local", worker_id="worker_1",
                            instance="worker_1.bench.1234.abcd", host="bench"),
        result={"energy": -5.070544374391, "gap": 14.541922024894, "converged": True,
                "formula": "H2O", "method": "gfn2", "task": "opt", "wall_time": 0.051,
                "xtb_version": "6.5.1", "dipole_debye": 2.1685,
                "quality": {"ok": True, "converged": True, "gap_ok": True,
                            "imaginary_frequencies": 0, "from_text_output": False,
                            "warnings": []}})
    return ((done.model_dump_json(indent=2) + "\n").encode(),
            (queued.model_dump_json(indent=2) + "\n").encode(), xyz)


def fill(template: bytes, job_id: str, group: str, digest: str, ns: int) -> bytes:
    return (template.replace(HOLES["id"].encode(), job_id.encode())
            .replace(HOLES["group"].encode(), group.encode())
            .replace(HOLES["hash"].encode(), digest.encode())
            .replace(HOLES["ns"].encode(), str(ns).encode()))


def build(root: Path, finished: int, queued: int) -> None:
    store = JobStore(root)
    store.ensure()
    lay = store.layout
    done_t, queued_t, xyz = templates()
    xyz_b = xyz.encode()
    base_ns = time.time_ns() - 10**15
    stamp: int | None = None
    for i in range(finished):
        jid = f"water_20261128_{i // 1000:06d}_{i % 1000:04d}"
        group = f"done-{i // GROUP_SIZE_DONE}"
        digest = hashlib.sha256(jid.encode()).hexdigest()
        os.mkdir(root / jid)
        write_file(root / jid / "input.xyz", xyz_b)
        write_file(root / jid / "metadata.json", fill(done_t, jid, group, digest, base_ns + i))
        if stamp is None:
            record = store.read(jid)  # the template reads back as a real record
            stamp = finished_ns(record)
            lay.group(group).mkdir(exist_ok=True)
        if i % GROUP_SIZE_DONE == 0:
            lay.group(group).mkdir(exist_ok=True)
        write_file(lay.done("COMPLETED") / DoneKey(stamp, jid).name, b"")
        write_file(lay.group(group) / jid, b"")
        os.symlink(jid, lay.dedup / claim_name(digest, 0))
        if i and i % 20000 == 0:
            log(f"{root.name}: {i} finished jobs written")
    base_ns = time.time_ns()
    for i in range(queued):
        jid = f"water_20261129_{i // 1000:06d}_{i % 1000:04d}"
        group = f"queued-{i // GROUP_SIZE_QUEUED}"
        digest = hashlib.sha256(jid.encode()).hexdigest()
        lay.group(group).mkdir(exist_ok=True)
        os.mkdir(root / jid)
        write_file(root / jid / "input.xyz", xyz_b)
        write_file(root / jid / "metadata.json", fill(queued_t, jid, group, digest, base_ns + i))
        write_file(lay.queue / QueueKey.make(0, base_ns + i, jid).name, b"")
        write_file(lay.group(group) / jid, b"")
        os.symlink(jid, lay.dedup / claim_name(digest, 0))
    report = IndexKeeper(store).sync()
    if report.read:
        raise SystemExit(f"bench_campaign: the built store was not fully indexed "
                         f"({report.read} records read by sync)")


def cached_stores(base: Path, finished: int, queued: int, rebuild: bool) -> dict[str, Path]:
    done_t, queued_t, _ = templates()
    key = hashlib.sha256(done_t + queued_t + f"{finished}/{queued}/v1".encode()).hexdigest()
    home = base / f"qforge-bench-campaign-{key[:12]}"
    if rebuild and home.exists():
        shutil.rmtree(home)
    stores = {"full": home / "full", "small": home / "small"}
    if not (home / "complete").exists():
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        for name, (f, q) in {"full": (finished, queued), "small": (0, queued)}.items():
            took = timed(lambda n=name, f=f, q=q: build(stores[n], f, q))
            log(f"built store {name!r}: {f} finished + {q} queued in {took:.1f} s")
        (home / "complete").touch()
    else:
        log(f"using the cached stores in {home}")
    return stores


def run_cli(root: Path, *argv: str) -> float:
    cmd = [*qforge_command(), "--jobs-dir", str(root), *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_campaign: {' '.join(argv)} exited {proc.returncode}: "
                         f"{proc.stderr.decode()[-300:]}")
    return took


def bench_b(stores: dict[str, Path], reps: int, what: str) -> list[str]:
    lines = []
    for label, argv in (("list --status QUEUED", ("list", "--status", "QUEUED")),
                        ("status", ("status",)),
                        ("list --group (100 jobs)", ("list", "--group", "queued-3"))):
        samples: dict[str, list[float]] = {"full": [], "small": []}
        run_cli(stores["full"], *argv)  # warm
        run_cli(stores["small"], *argv)
        for rep in range(reps):
            order = ("full", "small") if rep % 2 == 0 else ("small", "full")
            for name in order:
                samples[name].append(run_cli(stores[name], *argv))
        full, small = median(samples["full"]), median(samples["small"])
        ratio = full / small
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        lines.append(f"bench: campaign b `qforge {label}` with {what} "
                     f"{ms(full)} vs the queued only {ms(small)} (ratio {ratio:.2f}, "
                     f"target <= {TARGET_RATIO}): {verdict}")
    return lines


def worker_first_launch(root: Path, fake_bin: Path) -> float:
    env = dict(os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
               LOG_DIR="", WORKER_ID="bench", MAX_CONCURRENT_JOBS="1", POLL_INTERVAL="5")
    cmd = [*qforge_command(), "--jobs-dir", str(root), "worker", "--max-concurrent", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            text=True)
    took = None
    deadline = time.monotonic() + 120
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Starting execution for job" in line:
                took = time.perf_counter() - t0
                break
            if time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if took is None:
        raise SystemExit("bench_campaign: the worker never launched a job")
    return took


def bench_c(stores: dict[str, Path], reps: int, what: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="qforge-fake-xtb-") as tmp:
        fake = Path(tmp) / "xtb"
        fake.write_text("#!/bin/sh\nexec sleep 120\n")
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        samples: dict[str, list[float]] = {"full": [], "small": []}
        for rep in range(reps):
            order = ("full", "small") if rep % 2 == 0 else ("small", "full")
            for name in order:
                samples[name].append(worker_first_launch(stores[name], Path(tmp)))
    full, small = median(samples["full"]), median(samples["small"])
    # What the previous start-up paid: one read of every record.
    rebuild = timed(lambda: IndexKeeper(JobStore(stores["full"])).rebuild())
    verdict = "met" if full <= TARGET_START else "MISSED"
    return [f"bench: campaign c worker restart to first launch, {what} "
            f"{ms(full)} vs the queued only {ms(small)} (ratio {full / small:.2f}; "
            f"target <= {TARGET_START:g} s): {verdict}; a full re-read of every record "
            f"(the previous start-up) takes {ms(rebuild)}"]


BARE_EXPORT = r"""
import csv, json, os, sys
root, group, out = sys.argv[1:4]
cols = ("job_id","name","group","formula","method","task","status","energy_eh","gap_ev",
        "dipole_debye","converged","topology_changed","n_imaginary","temperature_k","zpe_eh",
        "h_eh","ts_eh","g_rrho_eh","free_energy_eh","wall_time_s","error_type","error_message")
thermo = ("temperature","zpe","enthalpy","ts","g_rrho","free_energy")
with open(out, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(cols)
    for jid in sorted(os.listdir(os.path.join(root, ".qforge", "groups", group))):
        with open(os.path.join(root, jid, "metadata.json"), "rb") as f:
            d = json.loads(f.read())
        r = d.get("result") or {}
        e = d.get("error") or {}
        s = d["spec"]
        w.writerow([jid, s.get("name"), group, "", s["method"], s["task"], d["status"],
                    r.get("energy"), r.get("gap"), r.get("dipole_debye"), r.get("converged"),
                    r.get("topology_changed"),
                    (r.get("quality") or {}).get("imaginary_frequencies"),
                    *[(r.get("thermochemistry") or {}).get(k) for k in thermo],
                    r.get("wall_time"), e.get("type"), e.get("message")])
"""


def bench_d(stores: dict[str, Path], reps: int, tmp: Path, finished: int) -> list[str]:
    group = "done-3" if finished >= 4 * GROUP_SIZE_DONE else "done-0"
    size = min(GROUP_SIZE_DONE, finished)
    out = tmp / "export.csv"
    bare_out = tmp / "bare.csv"
    ours, bare = [], []
    for _ in range(reps):
        ours.append(run_cli(stores["full"], "export", "--group", group, "--format", "csv",
                            "-o", str(out)))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BARE_EXPORT, str(stores["full"]), group,
                        str(bare_out)], check=True)
        bare.append(time.perf_counter() - t0)
    rows = sum(1 for _ in out.open()) - 1
    if rows != size:
        raise SystemExit(f"bench_campaign: export wrote {rows} rows, not {size}")
    t, b = median(ours), median(bare)
    verdict = "met" if t <= TARGET_EXPORT else "MISSED"
    return [f"bench: campaign d `qforge export --group` of {rows} jobs to CSV {ms(t)} "
            f"(target <= {TARGET_EXPORT:g} s): {verdict}; a bare json+csv loop over the same "
            f"files {ms(b)} (ratio {t / b:.2f})"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--finished", type=int, default=env_int("BENCH_CAMPAIGN_FINISHED", 100_000))
    p.add_argument("--queued", type=int, default=env_int("BENCH_CAMPAIGN_QUEUED", 1_000))
    p.add_argument("--reps", type=int, default=env_int("BENCH_CAMPAIGN_REPS", 7))
    p.add_argument("--dir", default=None, help="where the cached stores live")
    p.add_argument("--rebuild", action="store_true", help="build the stores again")
    args = p.parse_args()
    base = Path(args.dir or os.environ.get("QFORGE_BENCH_DIR") or tempfile.gettempdir())
    stores = cached_stores(base, args.finished, args.queued, args.rebuild)
    what = f"{args.finished} finished + {args.queued} queued"
    lines = bench_b(stores, args.reps, what)
    for line in lines:
        print(line, flush=True)
    for line in bench_c(stores, max(3, args.reps // 2), what):
        print(line, flush=True)
    with scratch_dir("qforge-bench-export-", args.dir) as tmp:
        for line in bench_d(stores, max(3, args.reps // 2), tmp, args.finished):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
