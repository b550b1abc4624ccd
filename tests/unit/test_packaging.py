"""The installed import names: `qforge` (controller/) and `qforge_runner` (runner_image/),
nothing generic in site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"controller": "qforge", "runner_image": "qforge_runner"}


def test_every_package_folder_is_listed_under_its_import_name() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}
    found = sorted(
        ".".join([FOLDERS[init.parent.relative_to(REPO).parts[0]],
                  *init.parent.relative_to(REPO).parts[1:]])
        for folder in FOLDERS for init in (REPO / folder).rglob("__init__.py"))
    assert sorted(config["packages"]) == found


def test_the_installed_packages_import_by_their_qforge_names() -> None:
    code = ("import qforge, qforge_runner, qforge.cli.main, qforge_runner.harness; "
            "print(qforge.__file__); print(qforge_runner.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd="/")
    lines = out.stdout.split()
    assert lines[0].endswith("controller/__init__.py")
    assert lines[1].endswith("runner_image/__init__.py")


def test_a_laptop_needs_neither_kubernetes_nor_the_server_s_libraries() -> None:
    """`pip install qforge[cli]`: the remote command line and the Python client import
    without kopf, the Kubernetes client, FastAPI or uvicorn (each blocked here)."""
    code = ("import sys\n"
            "for name in ('kopf', 'kubernetes', 'fastapi', 'uvicorn', 'starlette'):\n"
            "    sys.modules[name] = None\n"
            "import qforge.client.remote, qforge.client.api, qforge.cli.campaign, "
            "qforge.cli.submit\n"
            "from qforge.cli.main import build_parser\n"
            "build_parser().parse_args(['submit', 'x.smi'])\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
