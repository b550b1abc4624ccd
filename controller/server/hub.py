"""Progress for many watchers at the cost of one: each followed set of jobs (a group, or
ids) is polled by one task while anyone follows it, and every follower gets its
snapshots. 200 clients waiting on one campaign cost the store what one costs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from qforge.service.models import Progress
from qforge.service.progress import Watch

Key = tuple[str | None, tuple[str, ...]]


class _Feed:
    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.latest: Progress = watch.snapshot()
        self.changed = asyncio.Condition()
        self.followers = 0
        self.task: asyncio.Task[None] | None = None


class ProgressHub:
    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._feeds: dict[Key, _Feed] = {}

    async def follow(self, key: Key, make_watch: Callable[[], Watch],
                     keepalive: float = 15.0) -> AsyncIterator[Progress | None]:
        """The snapshots of `key` as they change (None as a keep-alive when nothing
        changed for `keepalive` seconds), until all its jobs are done."""
        feed = self._feeds.get(key)
        if feed is None:
            feed = _Feed(await run_in_threadpool(make_watch))
            self._feeds[key] = feed
            feed.task = asyncio.create_task(self._poll(key, feed))
        feed.followers += 1
        try:
            last: Progress | None = None
            while True:
                snap = feed.latest
                if snap != last:
                    yield snap
                    last = snap
                    if snap.done:
                        return
                async with feed.changed:
                    if feed.latest != last:
                        continue
                    try:
                        await asyncio.wait_for(feed.changed.wait(), keepalive)
                        continue
                    except TimeoutError:
                        pass
                yield None
        finally:
            feed.followers -= 1
            if feed.followers == 0 and self._feeds.get(key) is feed:
                del self._feeds[key]
                if feed.task is not None:
                    feed.task.cancel()

    async def _poll(self, key: Key, feed: _Feed) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while not feed.latest.done:
                await asyncio.sleep(self.interval)
                feed.latest = await run_in_threadpool(_poll_once, feed.watch)
                async with feed.changed:
                    feed.changed.notify_all()


def _poll_once(watch: Watch) -> Progress:
    watch.poll()
    return watch.snapshot()
