"""What went wrong, in one shape for every door: an exception a user can cause becomes a
`Problem` — the command line's exit code and one line on stderr, or the HTTP status of an
RFC 9457 problem+json answer with the same line as its detail."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pydantic import ValidationError

from qforge.auth.roles import Denied
from qforge.auth.tokens import TokenError, TokenNotFound, TokensUnreadable
from qforge.ids import InvalidJobId
from qforge.settings import SettingsError
from qforge.store.jobstore import CorruptRecord, JobNotFound, StoreError
from qforge_runner.errors import InputError, validation_line

# The command line's exit codes (DESIGN.md): 0 done, 1 failed, 2 bad input or usage,
# 3 no such job or group; 4 a bug (never for anything a user can cause).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_JOB, EXIT_BUG = 0, 1, 2, 3, 4
# A full or read-only store is the user's to fix before retrying: exit 2 with one line.
STORE_FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class UsageError(Exception):
    """A command or request that cannot be carried out as given (exit 2, HTTP 400)."""


class InvalidMolecules(UsageError):
    """Some molecules of a submission are invalid and `skip_invalid` was not asked:
    nothing was written. `lines` says what is wrong with each, and where."""

    def __init__(self, lines: list[str], total: int) -> None:
        self.lines = lines
        if len(lines) == 1 and total == 1:
            super().__init__(lines[0])
        else:
            super().__init__(f"{len(lines)} of {total} molecules are invalid; nothing was "
                             "submitted (--skip-invalid submits the others)")


class TooLarge(UsageError):
    """A request body over the server's limit (HTTP 413)."""


class RateLimited(UsageError):
    """Too many requests for one token (HTTP 429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthenticated(Exception):
    """No token, or one the server does not know (HTTP 401)."""


@dataclass(frozen=True)
class Problem:
    status: int  # HTTP status
    exit_code: int  # the command line's
    kind: str  # the problem type's last path segment
    title: str
    detail: str  # the one line a user reads


def problem_of(exc: BaseException) -> Problem | None:
    """The problem a user-caused exception stands for; None for a bug."""
    if isinstance(exc, Unauthenticated):
        return Problem(401, EXIT_USAGE, "unauthenticated", "Not signed in", str(exc))
    if isinstance(exc, Denied):
        return Problem(403, EXIT_USAGE, "forbidden", "Not allowed", str(exc))
    if isinstance(exc, InvalidMolecules):
        return Problem(422, EXIT_USAGE, "invalid-molecules", "Invalid molecules", str(exc))
    if isinstance(exc, TooLarge):
        return Problem(413, EXIT_USAGE, "too-large", "Request too large", str(exc))
    if isinstance(exc, RateLimited):
        return Problem(429, EXIT_USAGE, "rate-limited", "Too many requests", str(exc))
    if isinstance(exc, TokensUnreadable):
        return Problem(503, EXIT_USAGE, "tokens-unreadable", "Tokens unreadable", str(exc))
    if isinstance(exc, TokenNotFound):
        return Problem(404, EXIT_NO_JOB, "not-found", "No such token", str(exc))
    if isinstance(exc, TokenError):
        return Problem(400, EXIT_USAGE, "invalid-input", "Invalid input", str(exc))
    if isinstance(exc, JobNotFound):
        return Problem(404, EXIT_NO_JOB, "not-found", "No such job or group", str(exc))
    if isinstance(exc, ValidationError):
        return Problem(422, EXIT_USAGE, "invalid-input", "Invalid input",
                       validation_line(exc))
    if isinstance(exc, InputError | InvalidJobId | SettingsError | UsageError):
        return Problem(422 if isinstance(exc, InputError) else 400, EXIT_USAGE,
                       "invalid-input", "Invalid input", str(exc))
    if isinstance(exc, CorruptRecord):
        return Problem(409, EXIT_FAILED, "corrupt-record", "Unreadable record", str(exc))
    if isinstance(exc, StoreError):
        return Problem(409, EXIT_USAGE, "conflict", "Not possible now", str(exc))
    if isinstance(exc, RecursionError):
        return Problem(422, EXIT_USAGE, "invalid-input", "Invalid input",
                       "the input is nested too deeply to read")
    if isinstance(exc, OSError) and exc.errno in STORE_FULL_OR_READ_ONLY:
        where = f" ({exc.filename})" if exc.filename else ""
        return Problem(507, EXIT_USAGE, "store-full", "The store cannot be written",
                       f"the job store cannot be written: {exc.strerror}{where}; nothing "
                       "was written (free space or make it writable, then retry)")
    return None


# The exception types `problem_of` knows (the server's handlers are registered for them).
USER_ERRORS: tuple[type[BaseException], ...] = (
    Unauthenticated, Denied, UsageError, TokenError, StoreError, ValidationError, InputError,
    InvalidJobId, SettingsError, RecursionError, OSError)
