"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the destination's folder (same file system), is
fsynced, then renamed over the destination with `os.replace` (atomic on POSIX and on
NFS); finally the folder is fsynced so the rename survives a crash. Files are published
with mode 0644: the job store is read by other users (the controller, a person running
`qforge`), and mkstemp alone would make them 0600.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

FILE_MODE: Final = 0o644


def fsync_dir(folder: str | Path) -> None:
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


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` atomically, published with `mode` (0600 for a file
    only its owner may read: the token store's records)."""
    write_files_atomic([(Path(path), data)], mode=mode)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON atomically (a trailing newline, too)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_SYNC_THREADS: Final = 8
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def _fsync_all(fds: Sequence[int]) -> None:
    """fsync every fd at once from a few long-lived threads: the file system commits
    them together instead of one journal commit per file (the threads are made once per
    process, not once per call: a worker saves a job every few milliseconds)."""
    global _sync_pool
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    with _sync_pool_lock:
        if _sync_pool is None:
            _sync_pool = ThreadPoolExecutor(max_workers=_SYNC_THREADS,
                                            thread_name_prefix="fsync")
        pool = _sync_pool
    # The caller's thread takes the first one itself: one hand-off fewer.
    futures = [pool.submit(os.fsync, fd) for fd in fds[1:]]
    first: BaseException | None = None
    try:
        os.fsync(fds[0])
    except BaseException as exc:
        first = exc
    for future in futures:
        exc2 = future.exception()
        if first is None and exc2 is not None:
            first = exc2
    if first is not None:
        raise first


def _open_to_sync(path: Path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def write_files_atomic(items: Sequence[tuple[Path, bytes | Path]], *,
                       move: bool = False, mode: int = FILE_MODE) -> None:
    """Write several files, each atomically, all durably, in one round of fsyncs.

    Each item is a destination and its content: bytes, or a file to copy. Every one
    goes to a temporary file beside its destination; all are fsynced at once from a few
    threads (the file system commits them together instead of one journal commit per
    file), then renamed in the given order (so a reader waiting for the last one finds
    the others in place), then each folder is fsynced once. On an error nothing
    half-written is left behind.

    With ``move=True`` a source file on the destination's file system is not copied
    but fsynced where it is and renamed into place (its data is written once, by its
    own writer; the source name is gone afterwards); one on another file system is
    copied as above. A source must then be complete and no longer written to (xtb has
    exited): the rename publishes it whole, and it is durable before it is published.
    Every file is published with `mode` (set on the temporary file before any data is
    written to it).
    """
    temps: list[tuple[int, str, Path]] = []  # (fd, temporary or source path, destination)
    moved: set[str] = set()
    devices: dict[Path, int | None] = {}
    try:
        for dst, content in items:
            if move and isinstance(content, Path) \
                    and _device(content.parent, devices) == _device(dst.parent, devices) \
                    is not None:
                fd = _open_to_sync(content)
                temps.append((fd, str(content), dst))
                moved.add(str(content))
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
            temps.append((fd, tmp, dst))
            os.fchmod(fd, mode)
            with open(fd, "wb", closefd=False) as out:
                if isinstance(content, bytes):
                    out.write(content)
                else:
                    with open(content, "rb") as inp:
                        shutil.copyfileobj(inp, out)
        _fsync_all([fd for fd, _, _ in temps])
    except BaseException:
        for fd, tmp, _ in temps:
            os.close(fd)
            if tmp not in moved:
                os.unlink(tmp)
        raise
    for fd, _, _ in temps:
        os.close(fd)
    done = 0
    try:
        for _, tmp, dst in temps:
            if tmp in moved:
                os.chmod(tmp, mode)
                _move_into_place(Path(tmp), dst, mode)
            else:
                os.replace(tmp, dst)
            done += 1
    finally:
        for _, tmp, _ in temps[done:]:
            if tmp not in moved:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    for folder in dict.fromkeys(dst.parent for _, _, dst in temps):
        fsync_dir(folder)


def _move_into_place(src: Path, dst: Path, mode: int = FILE_MODE) -> None:
    """Rename `src` over `dst`; where the two are on one file system but under different
    mounts (a bind mount, a Kubernetes volume's subPath: st_dev is equal, yet rename
    answers EXDEV), copy it beside `dst`, fsync, and rename that instead."""
    try:
        os.replace(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        os.fchmod(fd, mode)
        with open(fd, "wb", closefd=False) as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, dst)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _device(folder: Path, known: dict[Path, int | None]) -> int | None:
    """The file system `folder` is on (looked up once per folder), or None."""
    if folder not in known:
        try:
            known[folder] = os.stat(folder).st_dev
        except OSError:
            known[folder] = None
    return known[folder]
