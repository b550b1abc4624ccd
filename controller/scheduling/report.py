"""What one scheduling pass did (`Scheduler.run_once`), for the caller, the logs and
the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PassReport:
    queued: int = 0
    launched: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    running_anywhere: int = 0
    # owner -> (running, queued) jobs in the whole store (running: every instance's)
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)
