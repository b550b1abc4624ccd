"""Group names: what a campaign's jobs share (`--group NAME`).

A group name is copied onto the runner Jobs as the `qforge.io/group` label and names a
folder of the group index (`.qforge/groups/<group>/`), so it must be a valid Kubernetes
label value and a safe folder name.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePath

from qforge_runner.errors import InputError
from qforge_runner.spec import is_label_value

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
