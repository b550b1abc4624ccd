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
