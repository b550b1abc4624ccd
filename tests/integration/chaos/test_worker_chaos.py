"""Chaos on the local worker (issue 12, point 2): three workers on one store, SIGKILLed
at random and restarted, real xtb. Replay a failure with QFORGE_CHAOS_SEED=<seed>."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.integration.chaos.harness import Chaos

pytestmark = pytest.mark.xtb

if shutil.which("xtb") is None or shutil.which("setpriv") is None:  # pragma: no cover
    pytest.skip("Debian's xtb and util-linux's setpriv are needed", allow_module_level=True)


def _seed() -> int:
    given = os.environ.get("QFORGE_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(10**6)


def test_workers_killed_at_random_lose_nothing_and_never_run_a_job_twice(
        tmp_path: Path) -> None:
    chaos = Chaos(tmp_path, seed=_seed(), workers=3, jobs=20, kills=8, lease=3.0)
    figures = chaos.run(timeout=420)
    for line in figures.lines():
        print(line)
    # the kills were real: at least one landed on a worker with jobs in flight, and
    # each of those jobs was taken back (run() waits, bounded, for every requeue)
    assert len(figures.kills) >= 1
    assert figures.recoveries, "no kill hit a worker while it ran jobs"
