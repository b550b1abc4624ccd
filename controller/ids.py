"""Job ids: validation and generation (`[a-z0-9][a-z0-9_-]{0,62}`)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

JOB_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_STEM_CLEAN = re.compile(r"[^a-z0-9]+")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SUFFIXES = 36**4


class InvalidJobId(ValueError):
    """The text given is not a job id."""


def validate_job_id(job_id: str) -> str:
    """Return job_id unchanged, or raise InvalidJobId with a one-line reason."""
    if not job_id:
        raise InvalidJobId("job id is empty")
    if len(job_id) > 63:
        raise InvalidJobId(f"job id {job_id[:20]!r}... is longer than 63 characters")
    if not JOB_ID_RE.fullmatch(job_id):
        raise InvalidJobId(
            f"job id {job_id!r} is not valid: use lowercase letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    return job_id


def new_job_id(stem: str, now: datetime | None = None) -> str:
    """A fresh id like `water_20261128_133039_k3f9` from a name or formula."""
    now = now or datetime.now(UTC)
    clean = _STEM_CLEAN.sub("_", stem.lower()).strip("_")[:36] or "job"
    # One read of the system's randomness, not one per character (a batch makes 100,000
    # ids): 32 random bits reduced to four base-36 digits (a bias of < 0.04 %, harmless
    # for an id whose collisions are checked anyway).
    n = int.from_bytes(secrets.token_bytes(4), "big") % _SUFFIXES
    suffix = ""
    for _ in range(4):
        n, digit = divmod(n, 36)
        suffix += _ALPHABET[digit]
    return f"{clean}_{now:%Y%m%d_%H%M%S}_{suffix}"
