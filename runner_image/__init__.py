"""qforge's runner: run one xtb calculation for one job folder.

Runs inside the runner pod (``qforge-runner JOB_DIR``) and in the local worker's
threads (`qforge_runner.harness.run_job`); needs pydantic and the standard library only.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def version() -> str:
    """qforge's installed version. Looked up on first use, not at import: reading the
    installed distributions costs ~25 ms, paid by every `qforge` command otherwise."""
    from importlib import metadata

    try:
        return metadata.version("qforge")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
