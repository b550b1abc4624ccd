"""Where things live in a job store.

    $JOBS_DIR/<job_id>/metadata.json        the record (source of truth)
    $JOBS_DIR/<job_id>/input.xyz            the molecule as submitted (what xtb reads)
    $JOBS_DIR/<job_id>/topology.json        its bond table, when the input had one
    $JOBS_DIR/.qforge/queue/<key>           one empty marker per QUEUED job
    $JOBS_DIR/.qforge/running/<job_id>+<instance>
                                            one marker per claimed job, naming its owner
    $JOBS_DIR/.qforge/cancel/<job_id>       a user's cancel request
    $JOBS_DIR/.qforge/workers/<instance>    heartbeat of a live worker or controller
    $JOBS_DIR/.qforge/incoming/             submissions being staged
    $JOBS_DIR/.qforge/done/<STATUS>/<finished_ns>-<job_id>
                                            one marker per finished job (COMPLETED,
                                            FAILED, CANCELLED), named by when it ended
    $JOBS_DIR/.qforge/groups/<group>/<job_id>
                                            one marker per member of a group
    $JOBS_DIR/.qforge/dedup/<hash>.<gen>    symlink -> the job holding that input
    $JOBS_DIR/<job_id>/groups/<group>       the job joined <group> as a duplicate
                                            (its own group is in metadata.json)
    $JOBS_DIR/.qforge/tokens/<name>.json    an API token's name, role and sha256 (mode
                                            0600; never the token): qforge.auth.tokens
    $JOBS_DIR/.qforge/tokens/generation     rewritten after every token change

The markers are an index only: every one of them can be rebuilt from the metadata
files (the tokens are not markers: they are the only record of who may use the
server). Queue keys sort in scheduling order within one owner's group (higher
priority first, then FIFO by the submit time in nanoseconds; between owners and groups
the scheduler takes turns, qforge.scheduling.fairshare), so finding the next jobs is one
listing of the queue folder: O(queued), whatever the number of finished jobs.
Claiming is `rename(queue/<key>, running/<job_id>+<instance>)`, atomic on local
filesystems and on NFS: exactly one claimant's rename succeeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

INDEX_DIR = ".qforge"
# A job's bond table (SDF/SMILES input), beside its input.xyz: qforge.inputs.topology
TOPOLOGY_FILE = "topology.json"
DONE_STATUSES = ("COMPLETED", "FAILED", "CANCELLED")
PRIORITY_OFFSET = 1000  # priorities run -1000..1000; keys hold 1000 - priority
_INSTANCE_CLEAN = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_instance(text: str) -> str:
    return _INSTANCE_CLEAN.sub("-", text)[:100] or "worker"


@dataclass(frozen=True, order=True)
class QueueKey:
    """A queue marker's name, parsed. Ordering = scheduling order."""

    rank: int  # PRIORITY_OFFSET - priority: smaller runs first
    created_ns: int
    job_id: str

    @property
    def name(self) -> str:
        return f"{self.rank:04d}-{self.created_ns:020d}-{self.job_id}"

    @property
    def priority(self) -> int:
        return PRIORITY_OFFSET - self.rank

    @classmethod
    def make(cls, priority: int, created_ns: int, job_id: str) -> QueueKey:
        return cls(PRIORITY_OFFSET - priority, created_ns, job_id)

    @classmethod
    def parse(cls, name: str) -> QueueKey | None:
        parts = name.split("-", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2])


@dataclass(frozen=True, order=True)
class DoneKey:
    """A finished job's marker name in `done/<STATUS>/`: when it ended, then its id."""

    finished_ns: int
    job_id: str

    @property
    def name(self) -> str:
        return f"{self.finished_ns:020d}-{self.job_id}"

    @classmethod
    def parse(cls, name: str) -> DoneKey | None:
        stamp, sep, job_id = name.partition("-")
        if not sep or len(stamp) != 20 or not stamp.isdigit() or not job_id:
            return None
        return cls(int(stamp), job_id)


# A done marker's job id starts after the 20-digit stamp and its dash.
DONE_ID_AT = 21


@dataclass(frozen=True)
class RunningMarker:
    job_id: str
    instance: str

    @property
    def name(self) -> str:
        return f"{self.job_id}+{self.instance}"

    @classmethod
    def parse(cls, name: str) -> RunningMarker | None:
        job_id, sep, instance = name.partition("+")
        if not sep or not job_id or not instance:
            return None
        return cls(job_id, instance)


class Layout:
    """Paths inside one job store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = root / INDEX_DIR
        self.queue = self.index / "queue"
        self.running = self.index / "running"
        self.cancel = self.index / "cancel"
        self.workers = self.index / "workers"
        self.incoming = self.index / "incoming"
        self.done_root = self.index / "done"
        self.groups = self.index / "groups"
        self.dedup = self.index / "dedup"

    def ensure(self) -> None:
        for path in (self.queue, self.running, self.cancel, self.workers, self.incoming,
                     self.groups, self.dedup, *(self.done(s) for s in DONE_STATUSES)):
            path.mkdir(parents=True, exist_ok=True)

    def done(self, status: str) -> Path:
        return self.done_root / status

    def group(self, group: str) -> Path:
        return self.groups / group

    def memberships(self, job_id: str) -> Path:
        """The folder of a job's extra groups (those it joined as a duplicate)."""
        return self.root / job_id / "groups"

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def metadata(self, job_id: str) -> Path:
        return self.root / job_id / "metadata.json"
