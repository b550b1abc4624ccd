"""Process groups: deadline, cancel, SIGTERM-deaf programs and children (no xtb needed)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from qforge_runner.process import ProcessOutcome, run_process
from tests.integration.runner.helpers import group_gone, living_members
from tests.waiting import wait_until


def _run(tmp_path: Path, script: str, *, timeout: float | None = None,
         cancel: threading.Event | None = None, grace: float = 2.0) -> ProcessOutcome:
    return run_process(["/bin/sh", "-c", script], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
                       stdout=tmp_path / "out", stderr=tmp_path / "err", timeout=timeout,
                       cancel=cancel, grace=grace)


def test_a_normal_exit_reports_its_status_and_output(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "echo hello; echo oops >&2; exit 3")
    pid = outcome.pid
    assert outcome.returncode == 3
    assert not outcome.timed_out and not outcome.cancelled
    assert (tmp_path / "out").read_text() == "hello\n"
    assert (tmp_path / "err").read_text() == "oops\n"
    assert group_gone(pid)


def test_the_deadline_stops_the_whole_group(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "sleep 300 & sleep 300 & wait", timeout=0.5)
    assert outcome.timed_out
    assert outcome.returncode == -signal.SIGTERM
    wait_until(lambda: not living_members(outcome.pid), 10, "the children to die")


def test_a_program_that_ignores_sigterm_gets_sigkill(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "trap '' TERM; echo ready; while :; do sleep 0.05; done",
                        timeout=0.3, grace=0.3)
    assert outcome.timed_out
    assert outcome.returncode == -signal.SIGKILL
    wait_until(lambda: not living_members(outcome.pid), 10, "the group to die")


def test_cancel_stops_the_group(tmp_path: Path) -> None:
    cancel = threading.Event()
    marker = tmp_path / "started"
    result: list[ProcessOutcome] = []
    thread = threading.Thread(target=lambda: result.append(
        _run(tmp_path, f"touch {marker}; exec sleep 300", cancel=cancel)))
    thread.start()
    wait_until(marker.exists, 30, "the program to start")
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    outcome = result[0]
    assert outcome.cancelled and not outcome.timed_out
    assert group_gone(outcome.pid)  # the leader was the only member: nothing is left


def test_cancel_before_the_start_still_reaps(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = _run(tmp_path, "exec sleep 300", cancel=cancel)
    assert outcome.cancelled
    assert group_gone(outcome.pid)


def test_children_left_behind_after_a_normal_exit_are_killed(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "sleep 300 & exit 0")
    assert outcome.returncode == 0
    wait_until(lambda: not living_members(outcome.pid), 10, "the orphan to die")


def test_without_pidfd_it_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)  # Linux < 5.3, other systems
    outcome = _run(tmp_path, "exit 4")
    assert outcome.returncode == 4
    outcome = _run(tmp_path, "exec sleep 300", timeout=0.3)
    assert outcome.timed_out
    assert group_gone(outcome.pid)


def test_a_missing_program_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_process(["/nonexistent/xtb"], cwd=tmp_path, env={}, stdout=tmp_path / "o",
                    stderr=tmp_path / "e")
