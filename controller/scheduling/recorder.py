"""When the scheduler's record writes run: inline, or after the pass's launches.

Every record write is durable (temp file, fsync, rename, folder fsync: a few
milliseconds, far more on a busy or networked disk). Done inline, a pass waits for each
of them before it launches the next job, and a calculation slot that freed meanwhile
stays empty: with jobs of tens of milliseconds that wait was most of the local worker's
overhead.

`AfterPass` keeps the writes a pass asks for in the order asked (FIFO) and runs them at
the pass's end (`flush`), on the same thread, after the pass has launched what it
could: a job's RUNNING record is always written before its terminal one, and the slots
are refilled first. What this changes, and why it is safe:

- A job's calculation may start before its RUNNING record is on disk. Its claim (the
  rename of its queue marker to a running marker naming this worker) is made first, as
  always, so no one else can take it. If the worker dies before the record is written,
  the record still says QUEUED under a running marker of a dead instance: recovery
  (`Scheduler._still_running`) puts it back in the queue, as for a claimant that died
  between its rename and its write. The job runs again; nothing is lost.
- A job's running marker is removed only after its terminal record is written
  (`JobStore.queue.finish`), so "nothing running" (`--until-idle`) cannot be seen while a
  terminal write is still pending; `close` drains on shutdown as well.
- Nothing else of a record changes: every write is still atomic and durable; only
  *when* it happens moves, by the length of a pass.

`Inline` runs each write at once; it is the default (the Kubernetes controller, and
tests that read a record right after launching).

A store that cannot be written (full, read-only, gone: an `OSError`): `Inline` raises it
to the caller, which keeps what it could not write and tries again at a later pass.
`AfterPass` reports it (`on_store_error`) and keeps that write and every one behind it
for the next flush, so their order is kept: a job's RUNNING record can never land after
its terminal one. Until the store takes them, `pending()` stays above zero, so an idle
check never passes over them.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Write = Callable[[], None]


StoreErrorHandler = Callable[[OSError], None]


def _run(write: Write) -> None:
    """Run one write; a bug in it is logged, never stops the writes after it. A store
    error (OSError) is the caller's to handle."""
    try:
        write()
    except OSError:
        raise
    except Exception:  # one job's failed write never stops the others
        log.exception("A record write failed")


class Recorder(Protocol):
    def submit(self, write: Write) -> None:
        """Run `write` (a closure over the store) now or at the pass's end, after
        earlier ones."""
        ...

    def pending(self) -> int:
        """Writes asked for and not yet done."""
        ...

    def flush(self) -> bool:
        """Run the writes asked for so far, in order; False when the store refused
        one (it and those behind it are kept for the next flush)."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Flush, retrying a refusing store for at most `timeout` seconds."""
        ...


class Inline:
    """Each write runs in the caller's thread, at once."""

    def submit(self, write: Write) -> None:
        _run(write)

    def pending(self) -> int:
        return 0

    def flush(self) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        return None


class AfterPass:
    """Writes wait in submission order until `flush`, which the scheduler calls at the
    end of every pass, on its own thread."""

    def __init__(self, *, on_store_error: StoreErrorHandler | None = None,
                 retry_seconds: float = 1.0) -> None:
        self._writes: collections.deque[Write] = collections.deque()
        self._on_store_error = on_store_error
        self._retry_seconds = retry_seconds

    def submit(self, write: Write) -> None:
        self._writes.append(write)

    def pending(self) -> int:
        return len(self._writes)

    def flush(self) -> bool:
        while self._writes:
            try:
                _run(self._writes[0])
            except OSError as exc:  # the store refuses: the same write at the next flush
                if self._on_store_error is not None:
                    self._on_store_error(exc)
                return False
            self._writes.popleft()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush; a write the store still refuses after `timeout` is given up: a
        RUNNING record not written leaves the job QUEUED under this (retired) instance's
        claim, a terminal one leaves it RUNNING under it; either way the recovery of a
        dead owner's claims runs it again. Nothing is lost."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.flush():
            if end is not None and time.monotonic() + self._retry_seconds > end:
                log.error("Giving up %d record writes the job store did not take; their "
                          "jobs are recovered and run again", self.pending())
                self._writes.clear()
                return
            time.sleep(self._retry_seconds)
