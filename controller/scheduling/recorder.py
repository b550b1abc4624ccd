"""Where the scheduler's record writes run: inline, or behind the pass on one thread.

Every record write is durable (temp file, fsync, rename, folder fsync: a few
milliseconds, far more on a busy or networked disk). Done inline, the scheduling pass
waits for each of them, and a calculation slot that frees meanwhile stays empty: with
jobs of tens of milliseconds that wait was most of the local worker's overhead.

`WriteBehind` runs the writes on one thread of their own, in the order they were
asked for (FIFO), so a job's RUNNING record is always written before its terminal
one, and the pass goes straight on to refill the slot. What this changes, and why it
is safe:

- A job's calculation may start before its RUNNING record is on disk. Its claim (the
  rename of its queue marker to a running marker naming this worker) is made first, as
  always, so no one else can take it. If the worker dies before the record is written,
  the record still says QUEUED under a running marker of a dead instance: recovery
  (`Scheduler._still_running`) puts it back in the queue, as for a claimant that died
  between its rename and its write. The job runs again; nothing is lost.
- A job's running marker is removed only after its terminal record is written
  (`JobStore.queue.finish`), so "nothing running" (`--until-idle`) cannot be seen while a
  terminal write is still pending; `drain` is called on shutdown as well.
- Nothing else of a record changes: every write is still atomic and durable; only
  *when* it happens moves, by the few milliseconds the queue holds it.

`Inline` runs each write at once, as before; it is the default (the Kubernetes
controller, and tests that read a record right after a pass).

A store that cannot be written (full, read-only, gone: an `OSError`): `Inline` raises it
to the caller, which keeps what it could not write and tries again at a later pass.
`WriteBehind` reports it (`on_store_error`) and retries the same write every
`retry_seconds`, holding the writes behind it, so their order is kept: a job's RUNNING
record can never land after its terminal one. Until the store takes it, `pending()`
stays above zero, so an idle check never passes over it.
"""

from __future__ import annotations

import logging
import queue
import threading
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
        """Run `write` (a closure over the store) now or soon, after earlier ones."""
        ...

    def pending(self) -> int:
        """Writes asked for and not yet done."""
        ...

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every write asked for so far is done; False on timeout."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Drain (at most `timeout` seconds), then stop (no more writes may be
        submitted)."""
        ...


class Inline:
    """Each write runs in the caller's thread, at once."""

    def submit(self, write: Write) -> None:
        _run(write)

    def pending(self) -> int:
        return 0

    def drain(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        return None


class WriteBehind:
    """Writes run on one background thread, in submission order. `on_idle` is called
    whenever the queue empties (the worker re-checks whether it is idle)."""

    def __init__(self, on_idle: Callable[[], None] | None = None, *,
                 on_store_error: StoreErrorHandler | None = None,
                 retry_seconds: float = 1.0) -> None:
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._on_idle = on_idle
        self._on_store_error = on_store_error
        self._retry_seconds = retry_seconds
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._pending = 0
        self._thread: threading.Thread | None = None

    def submit(self, write: Write) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="record-writer",
                                                daemon=True)
                self._thread.start()
        self._queue.put(write)

    def pending(self) -> int:
        with self._lock:
            return self._pending

    def drain(self, timeout: float | None = None) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain, then stop. A write the store still refuses after `timeout` is given
        up: a RUNNING record not written leaves the job QUEUED under this (retired)
        instance's claim, a terminal one leaves it RUNNING under it; either way the
        recovery of a dead owner's claims runs it again. Nothing is lost."""
        if not self.drain(timeout):
            log.error("Giving up %d record writes the job store did not take; their jobs "
                      "are recovered and run again", self.pending())
        self._closing.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=self._retry_seconds + 5)

    def _loop(self) -> None:
        while (write := self._queue.get()) is not None:
            while True:
                try:
                    _run(write)
                    break
                except OSError as exc:  # the store refuses: the same write again later
                    if self._on_store_error is not None:
                        self._on_store_error(exc)
                    if self._closing.wait(self._retry_seconds):
                        return
            with self._done:
                self._pending -= 1
                idle = self._pending == 0
                if idle:
                    self._done.notify_all()
            if idle and self._on_idle is not None:
                self._on_idle()
