"""The retry ladder: what to change when a run failed in a way that a changed run can
fix (docs/retry.md). A pure decision — the run's outcome and the job's earlier attempts
in, the next rung (or none) out; `qforge.scheduling.retrying` applies it.

- an SCC that did not converge → rung `etemp`: the electronic temperature raised to
  ETEMP K (xtb `--etemp`);
- the same after `etemp` → rung `preopt`: a GFN-FF optimisation first, then as before;
- an ohess that ended at a saddle point (an imaginary frequency) → rung `displace`: the
  next run starts from the geometry displaced along the imaginary mode (xtb's
  xtbhess.xyz);
- a timeout → rung `longer`: twice the time;
- anything else, or a rung already used → none: the job stays as it ended.

Each rung is used at most once per job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

from qforge_runner.failures import SCC_NOT_CONVERGED
from qforge_runner.molecule import Molecule
from qforge_runner.result import ErrorType, JobError
from qforge_runner.spec import JobSpec, Method, Task

# The electronic temperature of the first rung, K (xtb's default is 300 K): Fermi
# smearing strong enough to settle near-degenerate open-shell cases, yet small for the
# energy of a closed-shell molecule with a normal gap.
ETEMP: Final = 3000.0
RUNGS: Final = ("etemp", "preopt", "displace", "longer")


@dataclass(frozen=True)
class Rung:
    name: str  # one of RUNGS
    change: str  # what the next attempt changes, in words (the history keeps it)
    spec: dict[str, Any] = field(default_factory=dict)  # the spec's changed fields


def is_scc_failure(error: JobError | None) -> bool:
    return (error is not None and error.type is ErrorType.convergence_error
            and error.message.startswith(SCC_NOT_CONVERGED))


def next_rung(*, spec: JobSpec, error: JobError | None, used: Collection[str],
              saddle: Molecule | None = None, timeout: float) -> Rung | None:
    """The rung for a run that ended with `error` (None: it completed), given the rungs
    `used` by the job's earlier attempts. `saddle`: a completed ohess ended at a saddle
    point, and this is its geometry displaced along the imaginary mode. `timeout`: the
    seconds the run had (its own, else the executor's default)."""
    if error is None:
        if saddle is not None and spec.task is Task.ohess and "displace" not in used:
            return Rung("displace", "started from the saddle point displaced along its "
                        "imaginary mode", {"start_geometry": saddle})
        return None
    if is_scc_failure(error) and spec.method is not Method.gfnff:
        if "etemp" not in used and (spec.etemp or 0.0) < ETEMP:
            return Rung("etemp", f"electronic temperature {ETEMP:g} K", {"etemp": ETEMP})
        if "preopt" not in used and not spec.preopt_gfnff:
            return Rung("preopt", "a GFN-FF pre-optimisation first",
                        {"preopt_gfnff": True})
        return None
    if error.type is ErrorType.timeout and "longer" not in used:
        return Rung("longer", f"twice the time: {2 * timeout:g} s", {"timeout": 2 * timeout})
    return None
