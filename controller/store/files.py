"""The two plain file operations the indexes are made of: an empty marker, and a new
file written durably in a private staging folder."""

from __future__ import annotations

import os
from pathlib import Path


def touch(path: str | Path) -> None:
    """Create an empty marker file (idempotent: an existing one is left as it is)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)


def write_durable(path: str | Path, data: bytes) -> None:
    """Write a new file and fsync it (in a private staging folder: no temp file needed,
    the folder's rename into the store publishes it). Plain system calls: a buffered
    file object would add an fstat, an ioctl and lseeks to each of 200,000 files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
