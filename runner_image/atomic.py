"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the destination's folder (same file system), is
flushed and fsynced, then renamed over the destination with `os.replace` (atomic on
POSIX and on NFS); finally the folder is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

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


@contextlib.contextmanager
def _atomic(path: Path, mode: str) -> Iterator[IO[Any]]:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            # mkstemp makes 0600 files; the job store is read by other users (the
            # controller, a person running `qforge`): publish it like an ordinary file.
            os.fchmod(fh.fileno(), FILE_MODE)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with _atomic(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON atomically (a trailing newline, too)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy `src` over `dst` atomically (contents only, not permissions or times)."""
    with _atomic(dst, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out)
