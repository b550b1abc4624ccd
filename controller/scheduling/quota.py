"""Per-owner limits on submission: OWNER_MAX_QUEUED (and OWNER_LIMITS' max_queued).

The service layer calls `check_owner_quota` before it writes anything; a submission
that would leave its owner more queued jobs than their limit is refused whole, with
one line that says how many they have and may have.
"""

from __future__ import annotations

from qforge.scheduling.fairshare import Policy
from qforge.scheduling.owners import Owners
from qforge.settings import Settings
from qforge.store.errors import StoreError
from qforge.store.jobstore import JobStore


class OwnerQuotaExceeded(StoreError):
    """A submission would take its owner past their limit of queued jobs."""


def quota_problem(owner: str, queued: int, n_new: int, limit: int | None) -> str | None:
    """The one line refusing `n_new` more jobs of `owner`, who has `queued` queued
    jobs; None when they fit under `limit` (None: no limit)."""
    if limit is None or queued + n_new <= limit:
        return None
    jobs = "job" if n_new == 1 else "jobs"
    return (f"{owner} has {queued} queued jobs and may have at most {limit}: "
            f"{n_new} more {jobs} refused, nothing was submitted")


def queued_of(store: JobStore, owner: str, owners: Owners | None = None) -> int:
    """How many jobs of `owner` are queued (each queued record read once per `owners`
    cache: a server keeps one, so a submission reads only records new since the last)."""
    owners = owners or Owners.of(store)
    n = 0
    for key in store.queue.queued():
        tag = owners.tag(key.job_id)
        if tag is not None and tag.owner == owner:
            n += 1
    return n


def check_owner_quota(store: JobStore, owner: str, n_new: int, settings: Settings, *,
                      owners: Owners | None = None) -> None:
    """Raise OwnerQuotaExceeded when `n_new` more queued jobs would take `owner` past
    their limit. Reads nothing when the owner has no limit."""
    limit = Policy.from_settings(settings).queued_limit(owner)
    if limit is None or n_new <= 0:
        return
    problem = quota_problem(owner, queued_of(store, owner, owners), n_new, limit)
    if problem is not None:
        raise OwnerQuotaExceeded(problem)
