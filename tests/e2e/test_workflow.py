"""The kind workflow (.github/workflows/e2e.yaml) is valid and runs these same tests.

No cluster needed: runs in `make test` (and `make e2e-workflow`). actionlint is the real
one, built from the Go module proxy by `make k8s-tools`; skipped only when absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e.yaml"


def _actionlint() -> str | None:
    cache = Path(os.environ.get("QFORGE_CACHE", "/var/cache/qforge")) / "k8s"
    built = sorted(cache.glob("actionlint-*/bin/actionlint"))
    if built:
        return str(built[-1])
    return shutil.which("actionlint")


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def test_actionlint_accepts_every_workflow() -> None:
    actionlint = _actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not built (make k8s-tools)")
    workflows = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
    assert WORKFLOW in workflows
    proc = subprocess.run(
        [actionlint, "-no-color", *map(str, workflows)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    actionlint = _actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not built (make k8s-tools)")
    broken = tmp_path / "broken.yaml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:"))
    proc = subprocess.run(
        [actionlint, "-no-color", str(broken)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0


def test_two_kubernetes_versions_on_kind_with_the_same_tests() -> None:
    wf = _workflow()
    [job] = wf["jobs"].values()
    versions = job["strategy"]["matrix"]["kubernetes"]
    assert len(set(versions)) == 2
    assert job["env"]["QFORGE_E2E_LOAD"] == "kind"
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "kind create cluster" in runs and "kindest/node:${{ matrix.kubernetes }}" in runs
    assert "docker build -f Dockerfile.runner" in runs
    assert "docker build -f Dockerfile.controller" in runs
    assert "kind load docker-image" in runs
    assert "pytest" in runs and "tests/e2e" in runs
    # on failure: kubectl get/describe/logs and the jobs' metadata, uploaded
    dumps = [s for s in job["steps"] if s.get("if") == "failure()"]
    dump_text = "\n".join(s.get("run", "") for s in dumps)
    for needle in ("kubectl get", "kubectl -n qforge-e2e describe", "logs", "metadata.json"):
        assert needle in dump_text, needle
    assert any("upload-artifact" in s.get("uses", "") for s in dumps)
    assert any(
        s.get("if") == "always()" and "kind delete" in s.get("run", "") for s in job["steps"]
    )


def test_workflow_names_no_registry_or_mirror_of_its_own() -> None:
    # images come from the Dockerfiles and kind's own node images; nothing else is pulled
    text = WORKFLOW.read_text()
    assert "index-url" not in text.lower()
    assert "docker pull" not in text
