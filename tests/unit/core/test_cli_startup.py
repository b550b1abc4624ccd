"""What `qforge worker` loads at start: only what the worker needs."""

from __future__ import annotations

import subprocess
import sys

from qforge.cli.main import FORMATS, build_parser
from qforge.inputs import Format

# Modules of other commands (or optional extras) that a worker start must not import.
NOT_FOR_THE_WORKER = ("rdkit", "rich", "numpy", "prometheus_client", "kubernetes", "kopf",
                      "qforge.inputs", "qforge.cli.submit", "qforge.cli.campaign",
                      "qforge.service.export")


def test_the_worker_command_imports_nothing_it_does_not_use() -> None:
    probe = (
        "import sys\n"
        "from qforge.cli import main, commands\n"
        "import qforge.worker, qforge.logs\n"
        "main.build_parser().parse_args(['worker', '--until-idle'])\n"
        f"print(sorted(m for m in {NOT_FOR_THE_WORKER!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_format_choices_are_the_readers_formats() -> None:
    assert [f.value for f in Format] == FORMATS
    args = build_parser().parse_args(["submit", "-", "--format", "smi"])
    assert args.format == "smi"
