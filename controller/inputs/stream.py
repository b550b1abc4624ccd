"""Reading an input once, a line at a time, within a byte budget.

The budget is shared by all inputs of one submission (MAX_INPUT_BYTES): a regular
file over it is refused from its size before a byte is read, and every byte read
(stdin, a pipe, a file that grows) is counted, so memory stays bounded either way.
Lines are cut from 64 KiB reads; a line longer than MAX_LINE is refused, since no
molecule format has one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from qforge_runner.errors import InputError

CHUNK: Final = 64 * 1024
MAX_LINE: Final = 1024 * 1024
HEAD: Final = 8 * 1024  # what format sniffing looks at


def mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"


class Budget:
    """Bytes the inputs of one submission may still use."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int, file: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise InputError(
                f"{file}: the input is larger than MAX_INPUT_BYTES={self.limit} "
                f"({mib(self.limit)}); split it into several submissions or raise the limit")

    def check_sizes(self, sizes: list[tuple[str, int]]) -> None:
        """Refuse files whose sizes together exceed the budget, before reading them."""
        total = sum(size for _, size in sizes)
        if total > self.limit - self.used:
            biggest = max(sizes, key=lambda item: item[1])[0]
            raise InputError(
                f"{biggest}: the input files are {mib(total)} together, more than "
                f"MAX_INPUT_BYTES={self.limit} ({mib(self.limit)}); split them into "
                "several submissions or raise the limit")


class Stream:
    """One input (a file, or stdin for ``-``), read once through the budget."""

    def __init__(self, file: str, path: Path | None, budget: Budget) -> None:
        self.file = file
        self.budget = budget
        self._fh: BinaryIO = sys.stdin.buffer if path is None else open(path, "rb")  # noqa: SIM115
        self._owned = path is not None
        self._buf = b""
        self._eof = False
        self._fill(HEAD)

    def close(self) -> None:
        if self._owned:
            self._fh.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _fill(self, want: int) -> None:
        while not self._eof and len(self._buf) < want:
            chunk = self._fh.read(CHUNK)
            if not chunk:
                self._eof = True
                break
            self.budget.take(len(chunk), self.file)
            self._buf += chunk

    def head(self) -> str:
        """The first few KiB as text (for sniffing the format); nothing is consumed."""
        return self._buf[:HEAD].decode("utf-8", errors="replace")

    def _decode(self, raw: bytes, lineno: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.file}:{lineno}: not UTF-8 text; is this a molecule file?"
                             ) from None

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, line without its end-of-line), from the start of the input."""
        lineno = 0
        pos = 0
        while True:
            end = self._buf.find(b"\n", pos)
            if end < 0:
                self._buf = self._buf[pos:]
                pos = 0
                if self._eof:
                    if self._buf:
                        lineno += 1
                        yield lineno, self._decode(self._buf, lineno).rstrip("\r")
                        self._buf = b""
                    return
                if len(self._buf) > MAX_LINE:
                    raise InputError(f"{self.file}:{lineno + 1}: a line longer than "
                                     f"{mib(MAX_LINE)}; is this a molecule file?")
                self._fill(len(self._buf) + CHUNK)
                continue
            lineno += 1
            if end - pos > MAX_LINE:
                raise InputError(f"{self.file}:{lineno}: a line longer than {mib(MAX_LINE)}; "
                                 "is this a molecule file?")
            text = self._decode(self._buf[pos:end], lineno)
            if lineno == 1:
                text = text.lstrip("\ufeff")
            yield lineno, text.rstrip("\r")
            pos = end + 1

    def read_text(self) -> str:
        """The whole input as text (within the budget)."""
        chunks = [self._buf]
        while not self._eof:
            chunk = self._fh.read(CHUNK)
            if not chunk:
                self._eof = True
                break
            self.budget.take(len(chunk), self.file)
            chunks.append(chunk)
        self._buf = b""
        return self._decode(b"".join(chunks), 1).lstrip("\ufeff")
