"""Who owns each queued and running job, without reading every record at each pass.

A queue marker's name says priority, submit time and job id, not the owner or the
group. `Owners` keeps job id -> (owner, group) in memory and reads a job's record
(unvalidated, `JobStore.peek`) only the first time its id is asked for: a new queue
marker, or a running marker of a job another worker claimed. Both never change during
a job's life, so the cache is never stale; it is derived data, lost at a restart and
filled again by reading each queued and running job once (docs/fairshare.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from qforge.record import UNKNOWN_OWNER
from qforge.store.jobstore import JobStore
from qforge.store.layout import RunningMarker

# A cache bigger than this many entries beyond the live ones is pruned.
PRUNE_SLACK = 4096


class Tag(NamedTuple):
    """The fair-share identity of a job: its owner and the group it was submitted in.
    (A tuple: hashed and compared in C, as the scheduler does many times a pass.)"""

    owner: str
    group: str | None = None


def tag_of(data: dict[str, Any]) -> Tag:
    """A record's Tag from its JSON object (an unexpected value reads as unknown/none)."""
    owner = data.get("owner")
    group = data.get("group")
    return Tag(owner if isinstance(owner, str) and owner else UNKNOWN_OWNER,
               group if isinstance(group, str) and group else None)


class Owners:
    """job id -> Tag, each record read at most once while it is readable."""

    def __init__(self, peek: Callable[[str], dict[str, Any] | None],
                 exists: Callable[[str], bool] | None = None) -> None:
        """`peek`: a job's record as JSON, None when it cannot be read; `exists`:
        whether its record file is there at all (see `tag`)."""
        self._peek = peek
        self._exists = exists
        self._tags: dict[str, Tag] = {}
        self.reads = 0  # records read so far (a test and the bench look)

    @classmethod
    def of(cls, store: JobStore) -> Owners:
        return cls(store.peek, lambda job_id: store.layout.metadata(job_id).exists())

    def tag(self, job_id: str) -> Tag | None:
        """The job's Tag. None while its record is not there (a submission in progress
        makes its queue marker before its folder appears): asked again later. A record
        that is there but unreadable gets the unknown owner, not kept: claiming the job
        reports the damage and drops its marker, as without fair share."""
        tag = self._tags.get(job_id)
        if tag is None:
            self.reads += 1
            data = self._peek(job_id)
            if data is None:
                if self._exists is not None and self._exists(job_id):
                    return Tag(UNKNOWN_OWNER)
                return None
            tag = self._tags[job_id] = tag_of(data)
        return tag

    def remember(self, job_id: str, tag: Tag) -> None:
        self._tags[job_id] = tag

    def prune(self, live: Iterable[str], n_live: int) -> None:
        """Forget jobs no longer queued or running, when the cache has grown well past
        the `n_live` jobs that are."""
        if len(self._tags) > n_live + PRUNE_SLACK:
            keep = set(live)
            self._tags = {j: t for j, t in self._tags.items() if j in keep}

    def running(self, markers: Iterable[RunningMarker]) -> tuple[Counter[str], Counter[Tag]]:
        """Running jobs per owner and per (owner, group), from the running markers."""
        by_owner: Counter[str] = Counter()
        by_group: Counter[Tag] = Counter()
        for marker in markers:
            tag = self.tag(marker.job_id)
            if tag is None:
                continue  # its record is gone: the marker is tidied by recovery
            by_owner[tag.owner] += 1
            by_group[tag] += 1
        return by_owner, by_group
