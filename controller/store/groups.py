"""Group names: what a campaign's jobs share (`--group NAME`).

A job's own group is in its record; a duplicate submitted in another group later
counts there through `<job_id>/groups/<group>` (the membership file). The group index
`.qforge/groups/<group>/<job_id>` is made from these two sources (docs/store.md).

A group name is copied onto the runner Jobs as the `qforge.io/group` label and names a
folder of the group index (`.qforge/groups/<group>/`), so it must be a valid Kubernetes
label value and a safe folder name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePath

from qforge.ids import InvalidJobId, validate_job_id
from qforge.kubesyntax import is_label_value
from qforge.record import JobRecord, Status
from qforge.store.files import touch
from qforge.store.layout import Layout
from qforge.store.records import Records
from qforge_runner.errors import InputError

MAX_GROUP = 63
_CLEAN = re.compile(r"[^A-Za-z0-9_.-]+")


def validate_group(name: str) -> str:
    """`name` unchanged, or InputError with one line saying what is wrong."""
    if not name:
        raise InputError("group name is empty")
    if len(name) > MAX_GROUP:
        raise InputError(f"group {name[:20]!r}... is longer than {MAX_GROUP} characters")
    if ".." in name or not is_label_value(name):
        raise InputError(
            f"group {name!r} is not valid: use letters, digits, '-', '_' and '.' (no '..'), "
            "starting and ending with a letter or digit")
    return name


def default_group(first_input_name: str, now: datetime) -> str:
    """A group named after the first input and the time: `library-20261201-100512`.
    `first_input_name` is a path, a file name, or "-" (stdin)."""
    stem = PurePath(first_input_name).stem if first_input_name not in ("", "-") else "stdin"
    clean = _CLEAN.sub("-", stem).replace("..", ".").strip("-_.")[:40] or "batch"
    return validate_group(f"{clean}-{now:%Y%m%d-%H%M%S}")


class Groups:
    """Membership of jobs in groups, and the group index."""

    def __init__(self, layout: Layout, records: Records) -> None:
        self.layout = layout
        self._records = records

    def join(self, record: JobRecord, group: str) -> bool:
        """Count an existing job in `group` too. The index marker is made first and the
        membership file in the job's folder last: that file is the commit point (a
        reader of the group index checks it), and it never touches metadata.json, which
        the scheduler owns. Returns False when the job was already a member."""
        if self.contains(record, group):
            return False
        self.layout.group(group).mkdir(parents=True, exist_ok=True)
        touch(self.layout.group(group) / record.job_id)
        folder = self.layout.memberships(record.job_id)
        folder.mkdir(exist_ok=True)
        touch(folder / group)
        return True

    def contains(self, record: JobRecord, group: str) -> bool:
        """Whether a job counts in `group` (its own, or joined)."""
        return record.group == group or (
            self.layout.memberships(record.job_id) / group).exists()

    def of(self, record: JobRecord) -> list[str]:
        """Every group a job counts in: its own, then those it joined."""
        try:
            extra = sorted(os.listdir(self.layout.memberships(record.job_id)))
        except (FileNotFoundError, NotADirectoryError):
            extra = []
        own = [record.group] if record.group else []
        return own + [g for g in extra if g != record.group]

    def exists(self, group: str) -> bool:
        return self.layout.group(group).is_dir()

    def ids(self, group: str) -> list[str]:
        """The job ids in a group's index (one listing: O(group))."""
        try:
            return sorted(n for n in os.listdir(self.layout.group(group)) if _is_job_id(n))
        except FileNotFoundError:
            return []

    def statuses(self, group: str) -> dict[str, Status]:
        return {jid: st for jid, (st, _) in self.states(group).items()}

    def states(self, group: str, ids: Iterable[str] | None = None, *,
               molecules: dict[str, tuple[str | None, bool, str | None]] | None = None,
               ) -> dict[str, tuple[Status, str | None]]:
        """Each member's status and finished_at, from its metadata.json without
        validating all of it (members whose folder is gone, or whose joining never
        completed, are left out). `ids`: only those of the group's index. `molecules`,
        when given, is filled with each member's (molecule key, waits on others?, name)
        from the same read."""
        out: dict[str, tuple[Status, str | None]] = {}
        for job_id in self.ids(group) if ids is None else ids:
            data = self._records.peek(job_id)
            if data is None:
                continue
            try:
                status = Status(data["status"])
            except (KeyError, ValueError):
                continue
            if data.get("group") == group or (
                    self.layout.memberships(job_id) / group).exists():
                finished = data.get("finished_at")
                out[job_id] = (status, finished if isinstance(finished, str) else None)
                if molecules is not None:
                    key, name = data.get("molecule"), (data.get("spec") or {}).get("name")
                    molecules[job_id] = (key if isinstance(key, str) else None,
                                         bool(data.get("depends_on")),
                                         name if isinstance(name, str) else None)
        return out


def _is_job_id(name: str) -> bool:
    try:
        validate_job_id(name)
    except InvalidJobId:
        return False
    return True
