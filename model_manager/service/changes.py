"""Wake watchers when the catalogue changes: one poll of the count of writes per process, however many wait.

Every write to a model table counts in the database (migration 0013: the sum of the tenants' `changed` counters),
whichever replica made it, so a watcher on one server learns of a progress report that a loader sent to another.
The count only grows, so "is it newer than what I read?" is the whole question; a watcher woken by a write to
another model finds its own answer unchanged in the cache. The poll runs only while someone waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from model_manager.core.errors import Unavailable

log = logging.getLogger(__name__)

# How late a watcher may learn of a change: one small query this often per process, only while someone watches.
POLL_SECONDS = 0.1


class CatalogChanges:
    def __init__(self, read: Callable[[], Awaitable[int]], interval: float = POLL_SECONDS) -> None:
        self._read = read
        self.interval = interval
        self._version = -1  # the newest version the poll has seen
        self._tick = asyncio.Event()  # set (and replaced) when the version moves or the process closes
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def after(self, seen: int, within: float) -> int | None:
        """The count of writes once it is newer than `seen`, or None after `within` seconds without one.

        Raises Unavailable when the server is shutting down, so a stream ends with a status a client retries on."""
        self._waiting += 1
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._poll())
        try:
            async with asyncio.timeout(within):
                while self._version <= seen:
                    if self._closed:
                        raise Unavailable("the server is shutting down; watch again (another replica will answer)")
                    await self._tick.wait()
        except TimeoutError:
            return None
        finally:
            self._waiting -= 1
        return self._version

    def close(self) -> None:
        """Shutdown: every waiter ends now rather than holding the drain until its client gives up."""
        self._closed = True
        self._wake()
        if self._task is not None:
            self._task.cancel()

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _poll(self) -> None:
        failing = False
        try:
            while self._waiting and not self._closed:
                try:
                    version = await self._read()
                except Exception as e:
                    # Watchers keep waiting through a database outage; one line says so, not one per poll.
                    if not failing:
                        log.warning("watchers cannot read the count of writes (retrying): %s", e)
                    failing = True
                else:
                    if failing:
                        log.info("watchers read the count of writes again")
                    failing = False
                    if version > self._version:
                        self._version = version
                        self._wake()
                await asyncio.sleep(self.interval)
        finally:
            self._task = None
