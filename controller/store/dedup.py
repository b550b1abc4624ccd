"""Deduplication: the canonical input of a calculation and its hash.

Two submissions are the same calculation when their canonical inputs are equal:
element symbols, coordinates rounded to 1e-8 Å, charge, uhf, method, task, opt level
and solvent, and a Hessian's temperature when it is not 298.15 K (QCFractal's molecule
hash plus specification, in spirit). Name, labels, priority, timeout and resources do
not change the result and are left out.

The dedup index maps a hash to the job that holds it: `.qforge/dedup/<hash>.<gen>` is
a symbolic link whose target is the job id. Creating a symbolic link that exists fails
(EEXIST) atomically, on local file systems and on NFS, so of several submitters on
several machines racing for one hash exactly one wins generation `gen`. When the job
holding generation `gen` FAILED or was CANCELLED, the next submission takes `gen + 1`
(again one winner); the current holder is the highest generation. Nothing is ever
renamed or deleted there, so no reader can see a half-made change.
"""

from __future__ import annotations

import hashlib
import json

from qforge_runner.spec import DEFAULT_TEMPERATURE, JobSpec, Task

COORD_DECIMALS = 8


def _coord(x: float) -> str:
    text = f"{x:.{COORD_DECIMALS}f}"
    return "0." + "0" * COORD_DECIMALS if text.lstrip("-") == "0." + "0" * COORD_DECIMALS \
        else text


def canonical_input(spec: JobSpec) -> str:
    """The canonical input as compact JSON text (stable across versions of qforge)."""
    data = {
        "symbols": list(spec.molecule.symbols),
        "geometry": [[_coord(x) for x in atom] for atom in spec.molecule.geometry],
        "charge": spec.charge,
        "uhf": spec.uhf,
        "method": spec.method.value,
        "task": spec.task.value,
        "opt_level": spec.opt_level.value,
        "solvent": spec.solvent,
    }
    # The thermochemistry's temperature changes a Hessian's result; it is left out at
    # its default (and for other tasks), so the hashes of earlier jobs stay as they were.
    if spec.task in (Task.hess, Task.ohess) and spec.temperature != DEFAULT_TEMPERATURE:
        data["temperature"] = repr(spec.temperature)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def input_hash(spec: JobSpec) -> str:
    """sha256 of the canonical input, hex (64 characters)."""
    return hashlib.sha256(canonical_input(spec).encode()).hexdigest()


def claim_name(digest: str, gen: int) -> str:
    return f"{digest}.{gen}"


def parse_claim_name(name: str) -> tuple[str, int] | None:
    digest, dot, gen = name.rpartition(".")
    if not dot or len(digest) != 64 or not gen.isdigit():
        return None
    return digest, int(gen)
