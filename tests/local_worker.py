"""A local worker in process for tests: the scheduler on a `LocalExecutor`, writing its
records after each pass as `qforge worker` does, and a way to run it to idle."""

from __future__ import annotations

import threading
from collections.abc import Callable

from qforge.scheduling.core import Scheduler
from qforge.scheduling.local import LocalExecutor
from qforge.settings import Settings
from qforge.store.jobstore import JobStore

WAIT = 60.0  # seconds: the bound of every wait below


def local_worker(store: JobStore, cap: int = 1, *, xtb: str = "xtb", grace: float = 2.0,
                 **env: str) -> tuple[Scheduler, LocalExecutor]:
    """A started scheduler and its executor; `env` as the worker's environment."""
    settings = Settings.from_env(env, jobs_dir=store.root, max_concurrent_jobs=cap)
    executor = LocalExecutor(store, settings, xtb=xtb, grace=grace)
    sched = Scheduler(store, executor, settings, instance="me", writes_after_pass=True)
    sched.start()
    return sched, executor


def run_until_idle(sched: Scheduler, meanwhile: Callable[[], None] | None = None) -> None:
    """`sched.run(until_idle=True)` on a thread of its own, `meanwhile` done beside it;
    then shut down. Asserts that it went idle within WAIT seconds."""
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,), kwargs={"until_idle": True})
    runner.start()
    try:
        if meanwhile is not None:
            meanwhile()
        runner.join(WAIT)
        assert not runner.is_alive(), "the worker did not go idle"
    finally:
        stop.set()
        runner.join(WAIT)
        sched.shutdown()
