"""Users and tokens of the front door: roles and permission checks (roles.py), API
tokens kept as hashes in the job store (tokens.py), and who owns a job submitted from
this machine (`local_owner`). See docs/tokens.md."""

from __future__ import annotations

import getpass

from qforge.auth.roles import (
    Denied,
    Identity,
    Role,
    can_change,
    can_read,
    can_submit,
    require_change,
    require_read,
    require_submit,
)
from qforge.auth.tokens import (
    TokenError,
    TokenNotFound,
    TokenRecord,
    TokenStore,
    TokensUnreadable,
    bearer_token,
    hash_token,
    read_token_file,
    validate_token_name,
)
from qforge.record import UNKNOWN_OWNER

__all__ = [
    "UNKNOWN_OWNER",
    "Denied",
    "Identity",
    "Role",
    "TokenError",
    "TokenNotFound",
    "TokenRecord",
    "TokenStore",
    "TokensUnreadable",
    "bearer_token",
    "can_change",
    "can_read",
    "can_submit",
    "hash_token",
    "local_identity",
    "local_owner",
    "read_token_file",
    "require_change",
    "require_read",
    "require_submit",
    "validate_token_name",
]


def local_owner() -> str:
    """The owner of jobs submitted by the local command line: the OS user, or
    "unknown" where the process has none (a container's arbitrary uid without a passwd
    entry)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):
        return UNKNOWN_OWNER
    return name or UNKNOWN_OWNER


def local_identity() -> Identity:
    """The identity of the local command line: whoever can write the store's folder can
    change anything in it, so it acts as an admin, under the OS user's name."""
    return Identity(name=local_owner(), role=Role.admin)
