"""The one listing cache of the store's index folders.

A scheduler's poll usually finds an index folder as it left it (the cap is reached, or
nothing was submitted), so a folder's listing is reused while the folder is unchanged:
same inode and mtime, the mtime at least MTIME_MARGIN older than that listing (a change
later than the listing must then carry a later mtime, even with coarse file-system
timestamps), and the listing younger than RELIST_SECONDS (which bounds what NFS
attribute caching or a clock skew could hide). Otherwise the folder is listed again.
A reused listing is the very list object returned before (callers must not change it),
so a caller deriving something from it (the queue's parsed keys) can tell in O(1) that
nothing changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

MTIME_MARGIN = 1.0
RELIST_SECONDS = 10.0


@dataclass(frozen=True)
class _Listing:
    sig: tuple[int, int]
    listed_wall: float
    listed_mono: float
    names: list[str]


class Listings:
    """Folder -> its last listing, reused by the rule above. Thread-safe: each entry
    is replaced by one assignment."""

    def __init__(self) -> None:
        self._memo: dict[Path, _Listing] = {}

    def names(self, folder: Path) -> list[str]:
        """The names in `folder` ([] when it does not exist); do not modify the list."""
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            return []
        sig = (st.st_ino, st.st_mtime_ns)
        memo = self._memo.get(folder)
        if (memo is not None and memo.sig == sig
                and memo.listed_wall - st.st_mtime > MTIME_MARGIN
                and time.monotonic() - memo.listed_mono < RELIST_SECONDS):
            return memo.names
        listed_wall, listed_mono = time.time(), time.monotonic()
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        self._memo[folder] = _Listing(sig, listed_wall, listed_mono, names)
        return names
