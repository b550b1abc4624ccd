"""A progress bar on stderr for long batches (rich), and nothing when stderr is not a
terminal (a pipe, a log file, `kubectl exec` without -t)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Bar:
    """What the commands call; a no-op unless a rich bar is behind it."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task
        self.count = 0

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.count)

    def update(self, completed: int) -> None:
        self.count = completed
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)


@contextmanager
def progress_bar(what: str, *, total: int | None, enabled: bool = True) -> Iterator[Bar]:
    """A transient bar (`what`, count, rate, time left) while the block runs."""
    if not (enabled and sys.stderr.isatty()):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn() if total is not None else TextColumn("{task.completed}"),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(what, total=total))
