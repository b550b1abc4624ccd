"""Who may do what: three roles, one identity per request, pure permission checks.

    viewer     reads everything (list, status, show, result, export, wait)
    submitter  reads, submits, and cancels or deletes the jobs it owns
    admin      everything, whoever owns the job

A job's owner is the name of the token that submitted it (the OS user for the local
command line; "unknown" for a record written before owners existed, which only an admin
may then change). The functions here decide; they read nothing and write nothing.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    viewer = "viewer"
    submitter = "submitter"
    admin = "admin"


class Identity(BaseModel):
    """Who a request comes from: a token's name and role (or the local OS user)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    role: Role

    def __str__(self) -> str:
        return f"{self.name!r} ({self.role.value})"


class Denied(Exception):
    """A request its identity may not make; `str()` is one line saying who, what and
    why, shown to the user as it is (the server answers 403 with it)."""


def can_read(identity: Identity) -> bool:
    """Every role reads."""
    return identity.role in (Role.viewer, Role.submitter, Role.admin)


def can_submit(identity: Identity) -> bool:
    return identity.role in (Role.submitter, Role.admin)


def can_change(identity: Identity, owner: str) -> bool:
    """May `identity` cancel or delete a job owned by `owner`? An admin any job, a
    submitter its own only, a viewer none."""
    if identity.role is Role.admin:
        return True
    return identity.role is Role.submitter and owner == identity.name


def require_read(identity: Identity) -> None:
    if not can_read(identity):  # pragma: no cover - every role reads today
        raise Denied(f"token {identity} may not read jobs")


def require_submit(identity: Identity) -> None:
    if not can_submit(identity):
        raise Denied(f"token {identity} may not submit jobs (a viewer token only reads; "
                     "ask an admin for a submitter token)")


def require_change(identity: Identity, action: str, job_id: str, owner: str) -> None:
    """Raise Denied unless `identity` may `action` ("cancel", "delete") job `job_id`."""
    if can_change(identity, owner):
        return
    if identity.role is Role.viewer:
        raise Denied(f"token {identity} may not {action} job {job_id}: a viewer token "
                     "only reads")
    raise Denied(f"token {identity} may not {action} job {job_id}: it belongs to {owner}")
