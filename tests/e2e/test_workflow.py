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
        [actionlint, "-no-color", str(broken)], capture_output=True, text=True, timeout=120,
        check=False,
    )
    # exit 1: problems found (2 and 3 are actionlint's own failures, not a verdict),
    # and the problems are the two the typo makes
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"runs-on" section is missing in job' in proc.stdout, proc.stdout
    assert 'unexpected key "runs_on" for "job" section' in proc.stdout, proc.stdout


SCRIPT = REPO / "tools" / "kind" / "e2e.sh"
STEPS = ["install-kind", "create", "images", "load", "test", "dump", "delete"]


def _script_steps(job: dict[Any, Any]) -> list[tuple[str, str | None]]:
    """(subcommand, if:) of every workflow step that runs tools/kind/e2e.sh."""
    out = []
    for step in job["steps"]:
        run = step.get("run", "").strip()
        if run.startswith("tools/kind/e2e.sh "):
            out.append((run.split()[1], step.get("if")))
    return out


def test_two_kubernetes_versions_on_kind_with_the_same_tests() -> None:
    wf = _workflow()
    [job] = wf["jobs"].values()
    versions = job["strategy"]["matrix"]["kubernetes"]
    assert len(set(versions)) == 2
    assert job["env"]["QFORGE_E2E_LOAD"] == "kind"
    create = next(s for s in job["steps"] if s.get("run") == "tools/kind/e2e.sh create")
    assert create["env"]["KIND_NODE_IMAGE"] == "kindest/node:${{ matrix.kubernetes }}"
    # on failure: the dumps, uploaded; the cluster deleted always
    dumps = [s for s in job["steps"] if s.get("if") == "failure()"]
    assert any("upload-artifact" in s.get("uses", "") for s in dumps)


def test_every_workflow_step_is_a_subcommand_of_the_script_make_runs() -> None:
    """The workflow's steps are tools/kind/e2e.sh's, in order; `all` (make e2e-kind) runs
    the same ones: the two cannot drift."""
    [job] = _workflow()["jobs"].values()
    steps = _script_steps(job)
    assert [name for name, _ in steps] == STEPS
    assert dict(steps)["dump"] == "failure()" and dict(steps)["delete"] == "always()"
    # no step runs a command of its own besides the script's (uses: actions, pip install)
    for step in job["steps"]:
        run = step.get("run", "")
        assert not run or run.startswith("tools/kind/e2e.sh ") or "pip install" in run, run
    text = SCRIPT.read_text()
    for name in STEPS:
        assert f"\n    {name}) " in text, name
    all_body = text.split("\nall() {", 1)[1].split("\n}", 1)[0]
    for fn in ("create", "images", "load", "run_tests", "dump", "delete"):
        assert f" {fn}" in all_body, fn


def test_the_script_holds_the_workflow_commands() -> None:
    text = SCRIPT.read_text()
    for needle in (
        'kind create cluster --name "$CLUSTER" --image "${KIND_NODE_IMAGE',
        "docker build --network host -f Dockerfile.runner",
        "docker build --network host -f Dockerfile.controller",
        'kind load docker-image --name "$CLUSTER" "$RUNNER" "$CONTROLLER"',
        "-m pytest -v",
        "tests/e2e",
        "kubectl get all,jobs,pvc,pv,events",
        "kubectl -n qforge-e2e describe jobs,pods",
        "logs deploy/qforge",
        "metadata.json",
        "kind export logs",
        'kind delete cluster --name "$CLUSTER"',
    ):
        assert needle in text, needle


def test_the_script_refuses_an_unknown_subcommand() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "nonsense"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "tools/kind/e2e.sh create" in proc.stderr


def test_workflow_names_no_registry_or_mirror_of_its_own() -> None:
    # images come from the Dockerfiles and kind's own node images; nothing else is pulled
    text = WORKFLOW.read_text() + SCRIPT.read_text()
    assert "index-url" not in text.lower()
    assert "docker pull" not in text
