"""Stand-ins for the runner harness's two steps (`begin`, `conclude`) in the local
executor: a 'calculation' is a `FakeChild` that exits when its event is set, so the
executor's logic runs without processes (tests/integration has the real ones)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qforge.scheduling import local
from qforge_runner.harness import Calculation, RunConfig
from qforge_runner.process import ProcessOutcome
from qforge_runner.result import ErrorType, JobError, RunReport


class FakeChild:
    """A child process as the executor sees it, without a pidfd (so it is polled)."""

    def __init__(self, done: threading.Event) -> None:
        self.fd: int | None = None
        self.pid = 0
        self.started = time.monotonic()
        self.stopping_since: float | None = None
        self.done = done

    def exited(self) -> bool:
        return self.done.is_set()

    def stop(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self.done.set()

    def kill_late(self, grace: float) -> bool:
        return False

    def reap(self, *, timed_out: bool = False, cancelled: bool = False) -> ProcessOutcome:
        return ProcessOutcome(returncode=1, elapsed=0.0, pid=0, timed_out=timed_out,
                              cancelled=cancelled)


def failed(job_id: str | None) -> RunReport:
    return RunReport(success=False, result=None,
                     error=JobError(type=ErrorType.xtb_error, message="fake"),
                     job_id=job_id, started_at="t", finished_at="t")


class FakeRuns:
    """Installs fake `begin`/`conclude` in qforge.scheduling.local. Each job's
    calculation ends when `ends(job_id)` (default: at once) is set; `saved` lists the
    jobs whose results were saved, in order; `on_save` runs before each save."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch,
                 ends: Callable[[str], threading.Event] | None = None) -> None:
        self.configs: list[RunConfig] = []
        self.began: list[str] = []
        self.saved: list[str] = []
        self.on_save: Callable[[str], None] = lambda job_id: None
        self._ends = ends or self._at_once
        monkeypatch.setattr(local, "begin", self.begin)
        monkeypatch.setattr(local, "conclude", self.conclude)

    @staticmethod
    def _at_once(job_id: str) -> threading.Event:
        event = threading.Event()
        event.set()
        return event

    def begin(self, job_dir: Path, spec: Any, config: RunConfig, *,
              job_id: str | None = None) -> Calculation:
        assert job_id is not None
        self.configs.append(config)
        self.began.append(job_id)
        child: Any = FakeChild(self._ends(job_id))
        return Calculation(job_dir=job_dir, spec=spec, label=job_id, job_id=job_id,
                           log=logging.getLogger("fake"), started="t", child=child)

    def conclude(self, calc: Calculation, proc: ProcessOutcome | None) -> RunReport:
        assert calc.job_id is not None
        self.on_save(calc.job_id)
        self.saved.append(calc.job_id)
        if proc is not None and proc.cancelled:  # as the real one reports a stopped run
            return RunReport(success=False, result=None,
                             error=JobError(type=ErrorType.cancelled, message="cancelled"),
                             job_id=calc.job_id, started_at="t", finished_at="t")
        return failed(calc.job_id)
