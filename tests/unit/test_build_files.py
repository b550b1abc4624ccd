"""The build files agree with each other: pytest's default tier, make's tiers, the lock.

A bare `pytest` runs the unit tier only (the others need tools make installs first), every
make target that runs pytest names its tier's path, and every install (make setup, both
Dockerfiles, the kind workflow) takes its versions from constraints.txt, which pins every
dependency pyproject.toml names.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
MAKEFILE = (REPO / "Makefile").read_text()
CONSTRAINTS = REPO / "constraints.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not pinned with ==: {line!r}"
        pins[canonicalize_name(name)] = version
    return pins


def _make_recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE, re.M)
    assert match, f"no recipe for make {target}"
    return match.group(1)


def test_a_bare_pytest_collects_the_unit_tier_only() -> None:
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests/unit"]


def test_every_make_target_that_runs_pytest_names_its_tier() -> None:
    tiers = {
        "test-unit": "tests/unit",
        "test-integration": "tests/integration",
        "test-cluster": "tests/cluster",
        "test-infra": "tests/infra",
        "fuzz": "tests/integration/fuzz",
        "e2e": "tests/e2e",
        "e2e-workflow": "tests/e2e/test_workflow.py",
    }
    runners = set(re.findall(r"^([\w-]+):[^\n]*\n(?:\t[^\n]*\n)*?\t[^\n]*-m pytest", MAKEFILE,
                             re.M))
    assert set(tiers) <= runners
    for target in runners:
        recipe = _make_recipe(target)
        paths = re.findall(r"\btests/[\w/.]+", recipe)
        assert paths, f"make {target} runs pytest on no path: a bare pytest is the unit tier"
        for path in paths:
            assert (REPO / path).exists(), f"make {target}: {path}"
        if target in tiers:
            assert tiers[target] in paths, target


def test_the_lock_pins_every_dependency_pyproject_names_and_not_qforge() -> None:
    project = PYPROJECT["project"]
    named = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        named += [Requirement(r) for r in extra]
    pins = _pins()
    assert "qforge" not in pins
    missing = {canonicalize_name(r.name) for r in named if r.name != "qforge"} - set(pins)
    assert not missing, f"constraints.txt lacks {sorted(missing)}: run make lock"
    for req in named:
        if req.name != "qforge":
            pinned = pins[canonicalize_name(req.name)]
            assert req.specifier.contains(pinned), f"{req} but constraints.txt has {pinned}"


def test_make_setup_installs_from_the_lock_and_make_lock_resolves_the_same_extras() -> None:
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \$\(CONSTRAINTS\)$", MAKEFILE, re.M)
    assert "CONSTRAINTS := constraints.txt" in MAKEFILE
    setup = _make_recipe("$(STAMP)")
    installed = re.search(r"pip install -q -c \$\(CONSTRAINTS\) -e '(\.\[[\w,]+\])'", setup)
    assert installed, setup
    lock = _make_recipe("lock")
    assert f"pip install -q -e '{installed.group(1)}'" in lock
    assert "pip freeze --exclude-editable --exclude qforge" in lock


def test_both_images_and_the_kind_workflow_install_from_the_lock() -> None:
    for dockerfile in ("Dockerfile.runner", "Dockerfile.controller"):
        text = (REPO / dockerfile).read_text()
        assert re.search(r"^COPY [^\n]*\bconstraints\.txt /src/$", text, re.M), dockerfile
        installs = re.findall(r"pip install ([^\n]*)", text)
        assert installs and all(i.startswith("-c /src/constraints.txt ") for i in installs)
    # the build context sends only what .dockerignore lets through
    assert "!constraints.txt" in (REPO / ".dockerignore").read_text().splitlines()
    workflow = (REPO / ".github" / "workflows" / "e2e.yaml").read_text()
    installs = re.findall(r"pip install ([^\n]*)", workflow)
    assert installs and all(i.startswith("-c constraints.txt ") for i in installs)
