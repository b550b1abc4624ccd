"""qforge's runner: run one xtb calculation for one job folder.

Runs inside the runner pod (``qforge-runner JOB_DIR``) and in the local worker's
threads (`runner_image.harness.run_job`); needs pydantic and the standard library only.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("qforge")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
