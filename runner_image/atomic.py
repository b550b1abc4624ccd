"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the destination's folder (same file system), is
fsynced, then renamed over the destination with `os.replace` (atomic on POSIX and on
NFS); finally the folder is fsynced so the rename survives a crash. Files are published
with mode 0644: the job store is read by other users (the controller, a person running
`qforge`), and mkstemp alone would make them 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

FILE_MODE: Final = 0o644


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename still happened
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    write_files_atomic([(Path(path), text.encode("utf-8"))])


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON atomically (a trailing newline, too)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_files_atomic(items: Sequence[tuple[Path, bytes | Path]]) -> None:
    """Write several files, each atomically, all durably, in one round of fsyncs.

    Each item is a destination and its content: bytes, or a file to copy. Every one
    goes to a temporary file beside its destination; all are fsynced at once from a few
    threads (the file system commits them together instead of one journal commit per
    file), then renamed in the given order (so a reader waiting for the last one finds
    the others in place), then each folder is fsynced once. On an error nothing
    half-written is left behind.
    """
    temps: list[tuple[int, str, Path]] = []
    try:
        for dst, content in items:
            fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
            temps.append((fd, tmp, dst))
            os.fchmod(fd, FILE_MODE)
            with open(fd, "wb", closefd=False) as out:
                if isinstance(content, bytes):
                    out.write(content)
                else:
                    with open(content, "rb") as inp:
                        shutil.copyfileobj(inp, out)
        fds = [fd for fd, _, _ in temps]
        if len(fds) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(fds))) as pool:
                list(pool.map(os.fsync, fds))
        elif fds:
            os.fsync(fds[0])
    except BaseException:
        for fd, tmp, _ in temps:
            os.close(fd)
            os.unlink(tmp)
        raise
    for fd, _, _ in temps:
        os.close(fd)
    done = 0
    try:
        for _, tmp, dst in temps:
            os.replace(tmp, dst)
            done += 1
    finally:
        for _, tmp, _ in temps[done:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for folder in dict.fromkeys(dst.parent for _, _, dst in temps):
        fsync_dir(folder)
