"""A group named by a caller: its name checked, and that it exists."""

from __future__ import annotations

from qforge.store.jobstore import JobNotFound, JobStore, validate_group


class NoSuchGroup(JobNotFound):
    def __init__(self, group: str) -> None:
        super().__init__(f"no such group: {group}")


def known_group(store: JobStore, group: str) -> str:
    """The group's name, validated; NoSuchGroup (exit 3, a 404) when it has no member."""
    group = validate_group(group)
    if not store.groups.exists(group):
        raise NoSuchGroup(group)
    return group
