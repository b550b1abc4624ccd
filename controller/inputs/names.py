"""Job names from what the files say: sanitized to a valid JobSpec.name.

A name is a Kubernetes label value (it is copied onto the runner Job): 1-63 letters,
digits, '-', '_' or '.', starting and ending with a letter or digit. Titles of SDF
records and SMILES name columns are free text, so they are cleaned rather than
rejected: runs of other characters become '_', the ends are trimmed, and the result is
cut to 63 characters. A title with nothing usable left falls back to `<stem>_<n>`.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Final

MAX_NAME: Final = 63
_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_EDGE = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def sanitize_name(text: str) -> str:
    """`text` as a valid job name, or "" when nothing of it is usable."""
    clean = _EDGE.sub("", _BAD.sub("_", text.strip()))
    if len(clean) > MAX_NAME:
        clean = _EDGE.sub("", clean[:MAX_NAME])
    return clean


def file_stem(file: str) -> str:
    """The name a file gives its molecules: its stem, sanitized ("stdin" for -)."""
    if file == "-":
        return "stdin"
    return sanitize_name(PurePath(file).stem) or "molecule"


def indexed_name(stem: str, index: int) -> str:
    """`<stem>_<index>`, the stem shortened so that the whole stays ≤ 63 characters."""
    suffix = f"_{index}"
    return sanitize_name(stem[: MAX_NAME - len(suffix)]) + suffix


def pick_name(title: str | None, stem: str, index: int, *, single: bool) -> str:
    """A record's own title if it has one; else the file's stem for a file of one
    molecule, `<stem>_<index>` for a file of many."""
    if title:
        clean = sanitize_name(title)
        if clean:
            return clean
    return stem if single else indexed_name(stem, index)
