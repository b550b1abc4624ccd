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
import os
import time

from qforge.record import JobRecord
from qforge.store.layout import Layout
from qforge_runner.spec import DEFAULT_TEMPERATURE, JobSpec, Task

COORD_DECIMALS = 8
# A claim naming a job folder that has not appeared: its submitter is still writing it
# (the submitter waits up to submission.CLAIM_WAIT_SECONDS, by its own clock), or died
# (the claim is older than CLAIM_ORPHAN_SECONDS): the claim is dead.
CLAIM_ORPHAN_SECONDS = 600.0
LIVE_STATUSES = frozenset({"QUEUED", "RUNNING", "COMPLETED"})


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
    # The SCC's settings change a result too; left out when unset, as above.
    if spec.etemp is not None:
        data["etemp"] = repr(spec.etemp)
    if spec.scc_iterations is not None:
        data["scc_iterations"] = spec.scc_iterations
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


class DedupIndex:
    """The claims of `.qforge/dedup/`: who holds an input, and whether it is live."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def holder(self, digest: str) -> tuple[int, str | None]:
        """The highest generation of a hash's claim and the job id it names
        ((-1, None) when never claimed). O(generations): 1 for most molecules."""
        gen, holder = -1, None
        while True:
            try:
                target = os.readlink(self.layout.dedup / claim_name(digest, gen + 1))
            except FileNotFoundError:
                return gen, holder
            gen, holder = gen + 1, target

    def holder_state(self, job_id: str, digest: str, gen: int) -> str:
        """live: QUEUED/RUNNING/COMPLETED with that input; dead: anything else;
        pending: no folder yet and the claim is young (its submission is under way)."""
        try:
            data = json.loads(self.layout.metadata(job_id).read_bytes())
            status = data["status"]
            same = data.get("input_hash") == digest
        except FileNotFoundError:
            try:
                age = time.time() - os.lstat(
                    self.layout.dedup / claim_name(digest, gen)).st_mtime
            except FileNotFoundError:
                return "dead"
            return "pending" if age < CLAIM_ORPHAN_SECONDS else "dead"
        except (OSError, ValueError, KeyError, TypeError):
            return "dead"
        return "live" if same and status in LIVE_STATUSES else "dead"

    def take(self, job_id: str, digest: str, gen: int) -> bool:
        """Create claim `gen` naming `job_id`; False when another submitter has it."""
        try:
            os.symlink(job_id, f"{os.fspath(self.layout.dedup)}/{claim_name(digest, gen)}")
        except FileExistsError:
            return False
        return True

    def ensure_claim(self, record: JobRecord) -> bool:
        """Make a live record the holder of its input when no live job holds it (a
        folder copied in, a lost index). Returns True if it now holds a new claim."""
        digest = record.input_hash
        if not digest or record.status.value not in LIVE_STATUSES:
            return False
        gen, holder = self.holder(digest)
        if holder == record.job_id or (
                holder is not None and self.holder_state(holder, digest, gen) != "dead"):
            return False
        try:
            os.symlink(record.job_id, self.layout.dedup / claim_name(digest, gen + 1))
        except FileExistsError:
            return False  # a submitter got there first: that job holds the input
        except FileNotFoundError:
            self.layout.dedup.mkdir(parents=True, exist_ok=True)
            return self.ensure_claim(record)
        return True

    def age(self, job_id: str, digest: str) -> None:
        """Age every claim of `digest` naming `job_id` (being deleted), so that the next
        submitter of that input judges it dead at once rather than waiting for a folder
        that will not come. Claims are never removed."""
        gen = 0
        while True:
            claim = self.layout.dedup / claim_name(digest, gen)
            try:
                target = os.readlink(claim)
            except (FileNotFoundError, OSError):
                return
            if target == job_id:
                os.utime(claim, (0, 0), follow_symlinks=False)
            gen += 1
