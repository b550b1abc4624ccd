#!/usr/bin/env python3
"""Run every test tier of `make test`, the wait-bound ones side by side (docs/testing.md, CI).

    python3 tools/ci/tiers.py [--only TIER,...] [--log-dir build/test-logs]

The plan (``PLAN``): the Kubernetes tools build (helm first, the rest after it) starts at
once in the background; lint, unit, integration and browser run one after another in the
meantime (integration waits for helm only). When both the fast tiers and the tools are
done, the kwok tiers (cluster, chaos, autoscale: each its own control plane on its own
free ports, under its own run folder) start side by side, and beside them the real-node
lane: infra, then e2e (one real node per machine: never both at once).

Each step runs ``make --no-print-directory <target>`` with its output in
``<log-dir>/<step>.log``; the console gets one line when a step starts and one when it ends
(result and time), a line every minute naming what still runs, and a summary. Every step
runs even when another failed (a step whose prerequisite failed is reported as not run and
counts as a failure); a failure fails the run, names the step and prints its log's tail.
Stdlib only: it runs before and without the venv.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HEARTBEAT_S = 60.0
TAIL_LINES = 80


@dataclass(frozen=True)
class Step:
    name: str
    target: str
    after: tuple[str, ...] = ()  # steps that must have finished (passed) first
    # steps that must have finished, whatever their result: order only (CPU, the one node)
    after_any: tuple[str, ...] = ()
    # QFORGE_TEST_PORTS: the tier's own loopback ports (tests/kube/procs.py free_port),
    # below the kernel's ephemeral range (32768-60999 by default): tiers side by side
    # never pick the same port, nor one an outgoing connection holds.
    ports: str = ""


FAST = ("lint", "unit", "integration", "browser")
PLAN: tuple[Step, ...] = (
    # The tools: helm alone first (the integration tier needs only it), then the rest.
    Step("k8s-helm", "helm"),
    Step("k8s-tools", "k8s-tools", after=("k8s-helm",)),
    # The fast tiers, one after another: they use the CPU, not waits.
    Step("lint", "lint"),
    Step("unit", "test-unit", after_any=("lint",)),
    Step("integration", "test-integration", after=("k8s-helm",), after_any=("unit",)),
    Step("browser", "test-browser", after_any=("integration",)),
    # The wait-bound tiers, side by side once the fast tiers are done.
    Step("cluster", "test-cluster", after=("k8s-tools",), after_any=FAST, ports="20000-20999"),
    Step("chaos", "test-chaos", after=("k8s-tools",), after_any=FAST, ports="21000-21999"),
    Step("autoscale", "test-autoscale", after=("k8s-tools",), after_any=FAST,
         ports="22000-22999"),
    # The real node of this machine: infra, then e2e, never both at once.
    Step("infra", "test-infra", after=("k8s-tools",), after_any=FAST, ports="23000-23999"),
    Step("e2e", "e2e", after=("k8s-tools",), after_any=(*FAST, "infra"), ports="24000-24999"),
)


@dataclass
class Outcome:
    state: str = "waiting"  # waiting | running | passed | failed | not run
    started: float = 0.0
    seconds: float = 0.0
    reason: str = ""
    done: threading.Event = field(default_factory=threading.Event)


def fmt(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s"


class Runner:
    def __init__(self, plan: tuple[Step, ...], log_dir: Path, make: list[str]) -> None:
        self.plan = plan
        self.log_dir = log_dir
        self.make = make
        self.outcomes = {step.name: Outcome() for step in plan}
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def say(self, line: str) -> None:
        with self.lock:
            print(f"[ci {fmt(time.monotonic() - self.t0):>7}] {line}", flush=True)

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def run_step(self, step: Step) -> None:
        out = self.outcomes[step.name]
        for dep in (*step.after, *step.after_any):
            if dep in self.outcomes:
                self.outcomes[dep].done.wait()
        failed = [d for d in step.after
                  if d in self.outcomes and self.outcomes[d].state != "passed"]
        if failed:
            out.state, out.reason = "not run", f"{', '.join(failed)} failed"
            self.say(f"{step.name}: NOT RUN ({out.reason})")
            out.done.set()
            return
        out.state, out.started = "running", time.monotonic()
        self.say(f"{step.name}: started (make {step.target}; log {self.log_of(step.name)})")
        with open(self.log_of(step.name), "w") as log:
            log.write(f"# make {step.target} (started {time.strftime('%H:%M:%S')})\n")
            log.flush()
            env = dict(os.environ)
            # Tiers side by side in one checkout: pytest's cache folder is not shared.
            env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " -p no:cacheprovider").strip()
            if step.ports:
                env["QFORGE_TEST_PORTS"] = step.ports
            rc = subprocess.run(
                [*self.make, "--no-print-directory", step.target],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            ).returncode
            out.seconds = time.monotonic() - out.started
            log.write(f"# exit {rc} after {fmt(out.seconds)}\n")
        out.state = "passed" if rc == 0 else "failed"
        if rc != 0:
            out.reason = f"exit {rc}"
        self.say(f"{step.name}: {out.state.upper()} in {fmt(out.seconds)}"
                 + (f" ({out.reason})" if rc else ""))
        out.done.set()

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            now = time.monotonic()
            running = [f"{n} {fmt(now - o.started)}" for n, o in self.outcomes.items()
                       if o.state == "running"]
            if running:
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
                self.say(f"... running: {', '.join(running)} (load {load:.1f})")

    def run(self) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        threads = [threading.Thread(target=self.run_step, args=(s,), name=s.name, daemon=True)
                   for s in self.plan]
        stop = threading.Event()
        beat = threading.Thread(target=self.heartbeat, args=(stop,), daemon=True)
        beat.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        return self.report()

    def report(self) -> int:
        total = time.monotonic() - self.t0
        bad = [n for n, o in self.outcomes.items() if o.state != "passed"]
        print(f"\n==== tiers (wall {fmt(total)}; logs in {self.log_dir})", flush=True)
        for step in self.plan:
            o = self.outcomes[step.name]
            begin = f"from {fmt(o.started - self.t0)}" if o.started else ""
            print(f"  {step.name:<12} {o.state.upper():<8} {fmt(o.seconds):>7}  {begin}"
                  + (f"  ({o.reason})" if o.reason else ""))
        for name in bad:
            log = self.log_of(name)
            print(f"\n==== {name}: {self.outcomes[name].state.upper()}"
                  f" — last {TAIL_LINES} lines of {log}")
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()
                print("\n".join(lines[-TAIL_LINES:]))
            else:
                print(f"(not started: {self.outcomes[name].reason})")
        if bad:
            print(f"\nFAILED: {', '.join(bad)} (wall {fmt(total)})", flush=True)
            return 1
        print(f"\nall {len(self.plan)} steps passed (wall {fmt(total)})", flush=True)
        return 0


def select(plan: tuple[Step, ...], only: list[str]) -> tuple[Step, ...]:
    """The named steps (plus the tool builds they need); ordering edges to others dropped."""
    names = {s.name for s in plan}
    unknown = [n for n in only if n not in names]
    if unknown:
        known = ", ".join(sorted(names))
        raise SystemExit(f"unknown step(s) {', '.join(unknown)} (known: {known})")
    keep = set(only)
    needs = {s.name: s.after for s in plan}
    todo = list(keep)
    while todo:  # `after` edges are needs: keep the tool builds a chosen tier needs
        for dep in needs[todo.pop()]:
            if dep not in keep:
                keep.add(dep)
                todo.append(dep)
    return tuple(Step(s.name, s.target, tuple(d for d in s.after if d in keep),
                      tuple(d for d in s.after_any if d in keep), s.ports)
                 for s in plan if s.name in keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated steps (default: all)")
    ap.add_argument("--log-dir", type=Path, default=Path("build/test-logs"))
    ap.add_argument("--make", default=os.environ.get("MAKE", "make"))
    args = ap.parse_args(argv)
    plan = select(PLAN, [n for n in args.only.split(",") if n]) if args.only else PLAN
    return Runner(plan, args.log_dir, args.make.split()).run()


if __name__ == "__main__":
    sys.exit(main())
