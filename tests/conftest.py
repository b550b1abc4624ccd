"""Suite-wide: under `make test` (QFORGE_NO_SKIPS=1) a skipped test fails the run.

A test may skip only when its tool is truly absent, and `make` installs or builds every
tool before the suite that needs it; so a skip there means a tool went missing or a
target lost a prerequisite, and the run says so instead of passing quietly.
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("QFORGE_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == pytest.ExitCode.OK:
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(
                f"QFORGE_NO_SKIPS=1: {skipped} test(s) skipped; every tool should be "
                "installed here (see the reasons above with -rs)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Hypothesis budgets (tests/integration/fuzz, tests/unit/core/test_corruption.py): `make test`
# runs the "ci" profile, derandomized so a run is repeatable; `make fuzz` runs "fuzz"
# (HYPOTHESIS_PROFILE=fuzz: 10,000 examples a test, random, a failure printed with the
# seed and the example to replay).
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - the dev extra installs it
    pass
else:
    _slow = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None,
                              suppress_health_check=_slow, print_blob=True)
    settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                              suppress_health_check=_slow, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
