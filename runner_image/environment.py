"""xtb's environment: threads from the job's CPU allowance, stack size, parameter path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from qforge_runner.spec import JobSpec

# OpenMP threads get this much stack unless the environment says otherwise (xtb's
# manual recommends a large one: big molecules overflow the default few MB).
OMP_STACKSIZE: Final = "1G"


def xtb_environment(spec: JobSpec, xtb_path: str,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
    """xtb's environment: threads from the CPU allowance, stack size, parameter path."""
    env = dict(os.environ if base is None else base)
    threads = str(spec.threads)
    env["OMP_NUM_THREADS"] = threads
    env["MKL_NUM_THREADS"] = threads
    env["OPENBLAS_NUM_THREADS"] = threads  # Debian's xtb links OpenBLAS
    env["OMP_MAX_ACTIVE_LEVELS"] = "1"  # no nested parallel regions: threads == cpu
    env.setdefault("OMP_STACKSIZE", OMP_STACKSIZE)
    if not env.get("XTBPATH"):
        # GFN0 and GFN-FF read parameter files from XTBPATH; Debian's package puts them
        # in <prefix>/share/xtb but sets XTBPATH only through environment modules.
        share = Path(xtb_path).resolve().parent.parent / "share" / "xtb"
        if share.is_dir():
            env["XTBPATH"] = str(share)
    return env
