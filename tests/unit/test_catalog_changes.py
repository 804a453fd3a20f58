"""CatalogChanges: one poll of the catalogue version for every watcher of the process."""

from __future__ import annotations

import asyncio

import pytest

from model_manager.core.errors import Unavailable
from model_manager.service.changes import CatalogChanges


class Versions:
    def __init__(self) -> None:
        self.value = 1
        self.reads = 0

    async def __call__(self) -> int:
        self.reads += 1
        return self.value


async def test_many_waiters_share_one_poll_and_wake_on_a_newer_version() -> None:
    versions = Versions()
    changes = CatalogChanges(versions, interval=0.05)
    waiters = [asyncio.create_task(changes.after(1, 10)) for _ in range(50)]
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waiters)
    assert versions.reads <= 8  # about one per interval, not one per waiter
    versions.value = 2
    assert await asyncio.gather(*waiters) == [2] * 50


async def test_a_version_already_newer_returns_at_once_and_none_after_the_wait() -> None:
    versions = Versions()
    versions.value = 5
    changes = CatalogChanges(versions, interval=0.05)
    assert await changes.after(4, 10) == 5
    assert await changes.after(5, 0.2) is None


async def test_the_poll_stops_when_nobody_waits() -> None:
    versions = Versions()
    changes = CatalogChanges(versions, interval=0.05)
    assert await changes.after(1, 0.1) is None
    await asyncio.sleep(0.15)
    reads = versions.reads
    await asyncio.sleep(0.3)
    assert versions.reads == reads


async def test_a_failing_read_keeps_waiters_waiting_until_it_answers_again() -> None:
    versions = Versions()
    failing = True

    async def read() -> int:
        if failing:
            raise OSError("connection refused")
        return await versions()

    changes = CatalogChanges(read, interval=0.05)
    waiter = asyncio.create_task(changes.after(1, 10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    versions.value, failing = 3, False
    assert await waiter == 3


async def test_close_ends_every_waiter_with_unavailable() -> None:
    changes = CatalogChanges(Versions(), interval=0.05)
    waiter = asyncio.create_task(changes.after(1, 10))
    await asyncio.sleep(0.1)
    changes.close()
    with pytest.raises(Unavailable, match="shutting down"):
        await waiter
    with pytest.raises(Unavailable):
        await changes.after(1, 10)
