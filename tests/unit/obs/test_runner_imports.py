"""The runner image carries the base package only: the runner never imports the metrics
(nor kopf or the Kubernetes client)."""

from __future__ import annotations

import subprocess
import sys


def test_the_runner_imports_no_metrics_library() -> None:
    code = ("import sys, qforge_runner.cli, qforge_runner.harness; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'prometheus_client', 'kopf', 'kubernetes', 'qforge'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
