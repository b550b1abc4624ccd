"""Benchmarks of the front door (issue 20): a real `qforge server` (uvicorn) on loopback,
the real command line talking to it (QFORGE_SERVER, QFORGE_TOKEN), against the same
command on the store itself, in the same run.

1. Submission: N molecules (one multi-frame XYZ file of distinct waters, as
   bench_submit writes it) by one `qforge submit` through the server, against the same
   file by one local `qforge --jobs-dir ... submit`, each into a fresh store; rounds
   alternate which side goes first, the medians give the throughput ratio
   local_time / server_time (target >= 0.8). The server is started (and its token made
   by `qforge token create`) before the clock starts: a server is long-lived. Its peak
   RSS over the submission (VmHWM of /proc/<pid>/status; target < 300 MB) is the
   highest of the rounds. No store is removed before the last round (about 1.2 GB each
   at 100,000 jobs).
2. Export: a group of E completed jobs with results (written as bench_campaign writes
   them), `qforge export --group G --format csv -o FILE` through the server against the
   same locally; alternating rounds, the same bytes both ways; ratio local / server
   (target >= 0.8).
3. Polling: C concurrent clients (each its own token and connection, asyncio with
   httpx.AsyncClient) poll `GET /api/v1/groups/{group}` on the store of part 1 (one
   group of N jobs), each once every P seconds (a poller's interval, randomly phased),
   for D seconds; against a lone client polling the same route 20 times a second (as
   fast as one token may: API_RATE_LIMIT is 50) in the same server just before. Targets:
   no error (every answer 200) and the crowd's median latency within 10x of the lone
   client's. Pollers wait between polls, as real ones do: 200 clients asking again the
   moment they are answered would make any server's latency 200 times its service time
   (Little's law), whatever it does. The first answer, before any overview is shared
   (qforge.service.overview), is timed apart. With --molecules 0, the polled store is
   built directly: one group of --poll-jobs completed jobs.

Knobs (environment, or the options of the same name): BENCH_SERVER_N (--molecules,
100000), BENCH_SERVER_EXPORT (--export, 10000), BENCH_SERVER_CLIENTS (--clients, 200),
BENCH_SERVER_ROUNDS (--rounds, 3), BENCH_SERVER_POLL (--poll-seconds, 1.0),
BENCH_SERVER_DURATION (--duration, 20), QFORGE_BENCH_DIR (--dir: where stores are
built); 0 molecules or 0 exports skips that part. A quick run:
BENCH_SERVER_N=5000 BENCH_SERVER_EXPORT=2000 BENCH_SERVER_ROUNDS=1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bench_campaign as campaign
import httpx
from bench_campaign import build as build_campaign_store
from bench_submit import write_library
from benchlib import env_float, env_int, log, median, ms, qforge_command, rss_kb, scratch_dir

from qforge.auth.roles import Role
from qforge.auth.tokens import TokenStore

RATIO_TARGET = 0.8
RSS_TARGET_MB = 300.0
LATENCY_TARGET = 10.0
LONE_INTERVAL = 0.05  # 20 requests a second: under API_RATE_LIMIT's default of 50
EXPORT_GROUP = "done-0"  # bench_campaign's first group of finished jobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """The environment of every command: no server, store or profile of the user's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("QFORGE_SERVER", "QFORGE_TOKEN", "JOBS_DIR")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_mb(self) -> float:
        return rss_kb(self.pid)[1] / 1024

    def cpu(self) -> float:
        """The server's user + system CPU seconds so far (/proc/<pid>/stat)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_server(jobs: Path, home: Path, env: dict[str, str] | None = None
                   ) -> Iterator[Server]:
    """`qforge server` on a free loopback port over `jobs`, stopped (SIGTERM, then
    SIGKILL) afterwards whatever happens; its log in `home`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = open(home / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*qforge_command(), "--jobs-dir", str(jobs), "server", "--host", "127.0.0.1",
         "--port", str(port)], env={**clean_env(), **(env or {})}, stdout=logfile,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                logfile.flush()
                sys.exit(f"bench_server: the server exited ({proc.returncode}):\n"
                         f"{(home / f'server-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("bench_server: the server did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield Server(url, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        logfile.close()
        text = (home / f"server-{port}.log").read_text(errors="replace")
        if "Traceback" in text:
            sys.exit(f"bench_server: the server logged a traceback:\n{text[-3000:]}")


def make_token(jobs: Path, name: str, role: str) -> str:
    """A token through the real `qforge token create` (its last line)."""
    done = subprocess.run([*qforge_command(), "--jobs-dir", str(jobs), "token", "create",
                           name, "--role", role], env=clean_env(), capture_output=True,
                          text=True, check=False, timeout=120)
    if done.returncode != 0:
        sys.exit(f"bench_server: token create failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Run:
    wall: float
    user: float
    system: float
    out: str


def run_cli(argv: list[str], *, jobs: Path | None = None, server: Server | None = None,
            token: str = "") -> Run:
    """One `qforge` process, locally (`jobs`) or through `server`: wall and CPU time."""
    env = clean_env()
    cmd = [*qforge_command()]
    if server is not None:
        env.update(QFORGE_SERVER=server.url, QFORGE_TOKEN=token)
    else:
        assert jobs is not None
        cmd += ["--jobs-dir", str(jobs)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([*cmd, *argv], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, problem = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        sys.exit(f"bench_server: qforge {' '.join(argv)} failed ({proc.returncode}): "
                 f"{problem.strip()[-500:]}")
    return Run(wall, usage.ru_utime, usage.ru_stime, text)


def remove(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--", str(path)], check=False)


# --------------------------------------------------------------------------- 1
def bench_submit(tmp: Path, n: int, rounds: int) -> tuple[list[str], Path]:
    library = tmp / "library.xyz"
    write_library(library, n)
    argv = ["submit", str(library), "--task", "sp", "--group", "bench"]
    remote: list[Run] = []
    local: list[Run] = []
    peaks: list[float] = []
    idle: list[float] = []
    server_cpu: list[float] = []
    done: list[Path] = []
    kept: Path | None = None
    for r in range(rounds):
        sides = ("server", "local") if r % 2 == 0 else ("local", "server")
        for side in sides:
            jobs = tmp / f"{side}-{r}"
            jobs.mkdir()
            if side == "local":
                os.sync()
                local.append(run_cli(argv, jobs=jobs))
                log(f"round {r + 1}: local {local[-1].wall:.1f} s "
                    f"({local[-1].out.strip().splitlines()[-1][:80]})")
                done.append(jobs)
                continue
            token = make_token(jobs, "bench", "submitter")
            with running_server(jobs, tmp) as server:
                idle.append(server.peak_mb())
                os.sync()
                before = server.cpu()
                remote.append(run_cli(argv, server=server, token=token))
                peaks.append(server.peak_mb())
                server_cpu.append(server.cpu() - before)
            log(f"round {r + 1}: server {remote[-1].wall:.1f} s, server peak RSS "
                f"{peaks[-1]:.0f} MB (idle {idle[-1]:.0f} MB) "
                f"({remote[-1].out.strip().splitlines()[-1][:80]})")
            if r == rounds - 1:
                kept = jobs  # the store part 3 polls
            else:
                done.append(jobs)
    # The stores are removed only now: right after an `rm -rf` of 100,000 folders, ext4's
    # inode allocator skips the inodes it freed moments ago (see bench_submit), and the
    # side that came next paid for it.
    for jobs in done:
        remove(jobs)
    t_remote = median([x.wall for x in remote])
    t_local = median([x.wall for x in local])
    ratio = t_local / t_remote
    load = os.getloadavg()[0]
    by_round = ", ".join(f"{b.wall / a.wall:.2f}" for a, b in zip(remote, local, strict=True))
    lines = [
        f"bench: server submit {n} molecules in one command through the server "
        f"{t_remote:.1f} s = {n / t_remote:.0f} molecules/s vs the local CLI on a fresh "
        f"store {t_local:.1f} s = {n / t_local:.0f} molecules/s: ratio {ratio:.2f} "
        f"(target >= {RATIO_TARGET}): {'MET' if ratio >= RATIO_TARGET else 'MISSED'}; "
        f"median of {rounds} alternating rounds (by round: {by_round}); CPU (user+system) "
        f"of the client {median([x.user + x.system for x in remote]):.1f} s + the "
        f"server's {median(server_cpu):.1f} s vs the local CLI's "
        f"{median([x.user + x.system for x in local]):.1f} s; load average {load:.1f}",
        f"bench: server peak RSS during the submission of {n} molecules "
        f"{max(peaks):.0f} MB (VmHWM; idle server {median(idle):.0f} MB; the local CLI "
        f"is the baseline of bench_submit) (target < {RSS_TARGET_MB:.0f} MB): "
        f"{'MET' if max(peaks) < RSS_TARGET_MB else 'MISSED'}"]
    assert kept is not None
    return lines, kept


# --------------------------------------------------------------------------- 2
def bench_export(tmp: Path, size: int, rounds: int) -> list[str]:
    jobs = tmp / "export-store"
    took = time.perf_counter()
    build_campaign_store(jobs, size, 0)
    log(f"built a store of {size} completed jobs in {time.perf_counter() - took:.1f} s")
    argv = ["export", "--group", EXPORT_GROUP, "--format", "csv"]
    token = make_token(jobs, "reader", "viewer")
    remote: list[float] = []
    local: list[float] = []
    with running_server(jobs, tmp) as server:
        out_r, out_l = tmp / "remote.csv", tmp / "local.csv"
        run_cli([*argv, "-o", str(out_r)], server=server, token=token)  # warm both
        run_cli([*argv, "-o", str(out_l)], jobs=jobs)
        for r in range(max(rounds, 3)):
            sides = ("server", "local") if r % 2 == 0 else ("local", "server")
            for side in sides:
                if side == "server":
                    remote.append(run_cli([*argv, "-o", str(out_r)], server=server,
                                          token=token).wall)
                else:
                    local.append(run_cli([*argv, "-o", str(out_l)], jobs=jobs).wall)
        peak = server.peak_mb()
    if out_r.read_bytes() != out_l.read_bytes():
        sys.exit("bench_server: the export through the server differs from the local one")
    rows = out_r.read_bytes().count(b"\n") - 1
    if rows != size:
        sys.exit(f"bench_server: the export holds {rows} rows, not {size}")
    t_remote, t_local = median(remote), median(local)
    ratio = t_local / t_remote
    by_round = ", ".join(f"{b / a:.2f}" for a, b in zip(remote, local, strict=True))
    return [f"bench: server export of a {rows}-job group to CSV over HTTP {ms(t_remote)} "
            f"vs the local CLI {ms(t_local)} (the same bytes): ratio {ratio:.2f} "
            f"(target >= {RATIO_TARGET}): {'MET' if ratio >= RATIO_TARGET else 'MISSED'}; "
            f"median of {len(remote)} alternating rounds (by round: {by_round}); server "
            f"peak RSS {peak:.0f} MB"]


# --------------------------------------------------------------------------- 3
@dataclass
class Polls:
    latencies: list[float]
    errors: list[str]


async def poll(client: httpx.AsyncClient, path: str, until: float, interval: float,
               out: Polls, phase: float) -> None:
    await asyncio.sleep(phase)
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        start = loop.time()
        try:
            response = await client.get(path)
            if response.status_code != 200:
                out.errors.append(f"{response.status_code}: {response.text[:200]}")
            else:
                response.json()
                out.latencies.append(loop.time() - start)
        except httpx.HTTPError as exc:
            out.errors.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(max(0.0, interval - (loop.time() - start)))


async def polling(url: str, tokens: list[str], path: str, duration: float,
                  interval: float) -> Polls:
    out = Polls([], [])
    loop = asyncio.get_running_loop()
    rng = random.Random(20)
    clients = [httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120.0),
                                 headers={"Authorization": f"Bearer {t}"},
                                 limits=httpx.Limits(max_connections=1))
               for t in tokens]
    until = loop.time() + duration  # the clients made (each its TLS context) first
    try:
        await asyncio.gather(*(poll(c, path, until, interval, out,
                                    rng.uniform(0, interval) if len(tokens) > 1 else 0.0)
                               for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return out


def bench_polling(tmp: Path, jobs: Path, group: str, members: int, clients: int,
                  duration: float, interval: float) -> list[str]:
    store = TokenStore(jobs)
    tokens = [store.create(f"poller-{i}", Role.viewer) for i in range(clients + 1)]
    path = f"/api/v1/groups/{group}"
    with running_server(jobs, tmp) as server:
        headers = {"Authorization": f"Bearer {tokens[0]}"}
        t0 = time.perf_counter()
        first = httpx.get(server.url + path, headers=headers, timeout=600)
        cold = time.perf_counter() - t0
        if first.status_code != 200:
            sys.exit(f"bench_server: {path} answered {first.status_code}: {first.text}")
        total = sum(first.json()["counts"].values())
        if total != members:
            sys.exit(f"bench_server: {path} counts {total} jobs, not {members}")
        # back to back, but under the server's rate limit of one token (API_RATE_LIMIT)
        lone = asyncio.run(polling(server.url, tokens[:1], path, min(duration, 10.0),
                                   LONE_INTERVAL))
        crowd = asyncio.run(polling(server.url, tokens[1:], path, duration, interval))
        peak = server.peak_mb()
    if not lone.latencies:
        sys.exit(f"bench_server: the lone client got no answer: {lone.errors[:3]}")
    t_lone = median(lone.latencies)
    t_crowd = median(crowd.latencies) if crowd.latencies else float("inf")
    ratio = t_crowd / t_lone
    p95 = sorted(crowd.latencies)[int(0.95 * (len(crowd.latencies) - 1))] if (
        crowd.latencies) else float("inf")
    ok = not crowd.errors and not lone.errors and ratio <= LATENCY_TARGET
    errors = f"{len(crowd.errors)} errors (the lone client: {len(lone.errors)})"
    if crowd.errors or lone.errors:
        errors += f" (first: {(crowd.errors or lone.errors)[0][:160]})"
    return [f"bench: server {clients} concurrent clients polling the status of a "
            f"{members}-job group (each every {interval:g} s for {duration:g} s): "
            f"{len(crowd.latencies)} answers, {errors}, median latency {ms(t_crowd)} "
            f"(p95 {ms(p95)}) vs a lone client's {ms(t_lone)} ({len(lone.latencies)} "
            f"polls, {1 / LONE_INTERVAL:g} a second): ratio {ratio:.1f} "
            f"(target <= {LATENCY_TARGET:g} and no error): {'MET' if ok else 'MISSED'}; "
            f"the first (uncached) answer took {ms(cold)}; server peak RSS {peak:.0f} MB; "
            f"load average {os.getloadavg()[0]:.1f}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecules", type=int, default=env_int("BENCH_SERVER_N", 100_000))
    p.add_argument("--export", type=int, default=env_int("BENCH_SERVER_EXPORT", 10_000))
    p.add_argument("--clients", type=int, default=env_int("BENCH_SERVER_CLIENTS", 200))
    p.add_argument("--rounds", type=int, default=env_int("BENCH_SERVER_ROUNDS", 3))
    p.add_argument("--poll-seconds", type=float,
                   default=env_float("BENCH_SERVER_POLL", 1.0))
    p.add_argument("--duration", type=float,
                   default=env_float("BENCH_SERVER_DURATION", 20.0))
    p.add_argument("--poll-jobs", type=int,
                   default=env_int("BENCH_SERVER_POLL_JOBS", 100_000),
                   help="with --molecules 0: the polled group's size (completed jobs)")
    p.add_argument("--dir", default=None, help="where the stores are built")
    args = p.parse_args()
    with scratch_dir("qforge-bench-server-", args.dir) as tmp:
        if args.molecules:
            lines, kept = bench_submit(tmp, args.molecules, max(1, args.rounds))
            for line in lines:
                print(line, flush=True)
            if args.clients:
                for line in bench_polling(tmp, kept, "bench", args.molecules, args.clients,
                                          args.duration, args.poll_seconds):
                    print(line, flush=True)
            remove(kept)
        elif args.clients:
            jobs = tmp / "poll-store"
            took = time.perf_counter()
            size, campaign.GROUP_SIZE_DONE = campaign.GROUP_SIZE_DONE, args.poll_jobs
            try:  # one group of them all: done-0
                build_campaign_store(jobs, args.poll_jobs, 0)
            finally:
                campaign.GROUP_SIZE_DONE = size
            log(f"built a store of {args.poll_jobs} completed jobs in one group in "
                f"{time.perf_counter() - took:.1f} s")
            for line in bench_polling(tmp, jobs, EXPORT_GROUP, args.poll_jobs, args.clients,
                                      args.duration, args.poll_seconds):
                print(line, flush=True)
            remove(jobs)
        if args.export:
            for line in bench_export(tmp, args.export, args.rounds):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
