"""Run one program in its own process group, with a deadline and a cancel switch.

The program starts a new session (so a new process group, led by it); stopping it means
stopping the whole group: SIGTERM, a short grace, then SIGKILL to whatever is left. The
leader is always waited for, so no zombie stays behind. Safe to use from several
threads at once (no signal handlers, no preexec_fn, no chdir).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Final

POLL_SECONDS: Final = 0.1
GRACE_SECONDS: Final = 2.0


@dataclass(frozen=True)
class ProcessOutcome:
    returncode: int  # negative: killed by that signal (Popen's convention)
    elapsed: float  # seconds from start to exit
    pid: int  # also the process group id
    timed_out: bool = False
    cancelled: bool = False


def kill_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _exited(pid: int) -> bool:
    """Has the child exited? It is left a zombie (WNOWAIT), so its process group id stays
    taken and a signal to the group cannot reach an unrelated process that reused the id."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored, a waitpid(-1) reaper)
        return True


def _wait_exited(pid: int, seconds: float, poll: float) -> None:
    end = time.monotonic() + seconds
    while not _exited(pid) and time.monotonic() < end:
        time.sleep(poll / 4)


@lru_cache(maxsize=32)
def _which(program: str, path: str | None) -> str | None:
    return shutil.which(program, path=path)


def find_program(program: str) -> str | None:
    """`shutil.which`, remembered per PATH (a worker starts xtb for every job; a search
    of PATH is a stat per folder)."""
    return _which(program, os.environ.get("PATH"))


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """Have the kernel SIGKILL the program if the process that started it dies (a worker
    killed with SIGKILL cannot stop its xtb runs itself). `setpriv` (util-linux, in every
    Debian) sets PR_SET_PDEATHSIG and then execs the program, keeping its pid; a
    preexec_fn would do the same but is unsafe in a threaded worker."""
    program = find_program(argv[0]) if argv else None
    if program is None:
        # Let Popen raise its usual FileNotFoundError for a missing program.
        return list(argv)
    setpriv = find_program("setpriv")
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", program, *argv[1:]]


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    poll: float = POLL_SECONDS,
    grace: float = GRACE_SECONDS,
) -> ProcessOutcome:
    """Run `argv` to its end, to the deadline (`timeout` s), or until `cancel` is set.

    Output goes to files, never to pipes (no deadlock, no memory held for big outputs);
    without `stderr`, both streams go to `stdout`, interleaved as printed.
    Raises OSError when the program cannot be started.
    """
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "wb"))
        err: IO[bytes] | int = (
            subprocess.STDOUT if stderr is None else files.enter_context(open(stderr, "wb"))
        )
        start = time.monotonic()
        proc = subprocess.Popen(
            _with_parent_death_signal(argv), cwd=cwd, env=dict(env),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
    pgid = proc.pid  # a new session: the child leads its own process group
    deadline = None if timeout is None else start + timeout
    timed_out = cancelled = False
    pidfd: int | None = None
    try:
        # A pidfd becomes readable the moment the child exits: no polling latency on the
        # common path (Linux >= 5.3); elsewhere, sleep in short steps.
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(pgid)
        waiter = select.poll()
        if pidfd is not None:
            waiter.register(pidfd, select.POLLIN)
        while not _exited(pgid):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            wait = poll if deadline is None else min(poll, deadline - now)
            if pidfd is not None:
                waiter.poll(max(1, int(wait * 1000)))
            elif cancel is not None:
                cancel.wait(wait)
            else:
                time.sleep(wait)
    finally:
        if pidfd is not None:
            os.close(pidfd)
        # Reached on exit, deadline, cancel, or an exception in this thread: nothing of
        # the group may outlive this call.
        if not _exited(pgid):
            kill_group(pgid, signal.SIGTERM)
            _wait_exited(pgid, grace, poll)
        kill_group(pgid, signal.SIGKILL)  # the leader if it ignored SIGTERM; any children
        proc.wait()  # reap the leader (SIGKILL cannot be caught: no waiting here)
    return ProcessOutcome(
        returncode=proc.returncode, elapsed=time.monotonic() - start, pid=pgid,
        timed_out=timed_out, cancelled=cancelled,
    )
