"""JobStore.queue.queued() reuses its listing only while that is provably safe."""

from __future__ import annotations

import os
import time

import pytest

from qforge.store import listings
from qforge.store.jobstore import JobStore

from .conftest import WATER, water_spec


def _set_mtime(path: os.PathLike[str], mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_new_job_is_seen_by_the_next_poll(store: JobStore) -> None:
    a = store.submit(water_spec(), input_text=WATER).job_id
    assert [k.job_id for k in store.queue.queued()] == [a]
    b = store.submit(water_spec(), input_text=WATER).job_id
    assert [k.job_id for k in store.queue.queued()] == [a, b]


def test_a_change_in_the_same_timestamp_tick_is_not_missed(store: JobStore) -> None:
    """Coarse file-system timestamps: a marker added right after a listing may leave
    the folder's mtime unchanged. A listing taken that close to the mtime is never
    reused."""
    a = store.submit(water_spec(), input_text=WATER).job_id
    queue = store.layout.queue
    stamp = os.stat(queue).st_mtime_ns
    assert [k.job_id for k in store.queue.queued()] == [a]
    b = store.submit(water_spec(), input_text=WATER).job_id
    _set_mtime(queue, stamp)  # as if both changes fell in one tick
    assert [k.job_id for k in store.queue.queued()] == [a, b]


def test_an_unchanged_old_folder_is_not_listed_again(store: JobStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = store.submit(water_spec(), input_text=WATER).job_id
    queue = store.layout.queue
    _set_mtime(queue, time.time_ns() - 5_000_000_000)  # last changed 5 s ago
    assert [k.job_id for k in store.queue.queued()] == [a]
    calls = []
    real = os.listdir
    monkeypatch.setattr(listings.os, "listdir", lambda p: calls.append(p) or real(p))
    for _ in range(100):
        assert [k.job_id for k in store.queue.queued()] == [a]
    assert calls == []
    # ...but never for longer than RELIST_SECONDS
    monkeypatch.setattr(listings, "RELIST_SECONDS", 0.0)
    assert [k.job_id for k in store.queue.queued()] == [a]
    assert calls == [queue]
