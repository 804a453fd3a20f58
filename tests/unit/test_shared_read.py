"""SharedRead: callers share reads, and none gets an answer from a read that started before it called."""

from __future__ import annotations

import asyncio

import pytest

from model_manager.core.aio import SharedRead


class Source:
    """A value that callers may change at any time, read slowly (as a database round trip is)."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.reading = asyncio.Event()  # set when a read has seen the value
        self.fail: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self) -> int:
        self.reads += 1
        seen = self.value  # what the database holds when the query runs
        self.reading.set()
        await self.gate.wait()
        await asyncio.sleep(0.001)
        if self.fail is not None:
            raise self.fail
        return seen


async def in_flight(source: Source) -> None:
    await source.reading.wait()


async def test_a_caller_never_sees_a_value_older_than_its_call() -> None:
    source = Source()
    shared = SharedRead(source.read)
    source.gate.clear()
    early = asyncio.create_task(shared())
    await in_flight(source)  # the first read has seen 0
    source.value = 1  # a write acknowledged before the next caller arrives
    late = asyncio.create_task(shared())
    source.gate.set()
    assert await early == 0
    assert await late == 1


async def test_callers_that_arrive_together_share_one_read() -> None:
    source = Source()
    shared = SharedRead(source.read)
    results = await asyncio.gather(*(shared() for _ in range(50)))
    assert results == [0] * 50
    assert source.reads == 1


async def test_callers_arriving_during_a_read_share_the_next_one() -> None:
    source = Source()
    shared = SharedRead(source.read)
    source.gate.clear()
    first = asyncio.create_task(shared())
    await in_flight(source)
    more = [asyncio.create_task(shared()) for _ in range(20)]
    await asyncio.sleep(0)
    source.gate.set()
    await asyncio.gather(first, *more)
    assert source.reads == 2


async def test_an_error_reaches_that_batch_and_the_next_call_reads_again() -> None:
    source = Source()
    shared = SharedRead(source.read)
    source.fail = ConnectionError("database down")
    with pytest.raises(ConnectionError):
        await shared()
    source.fail = None
    source.value = 7
    assert await shared() == 7


async def test_a_caller_that_gives_up_does_not_cancel_the_read_of_the_others() -> None:
    source = Source()
    shared = SharedRead(source.read)
    source.gate.clear()
    quitter = asyncio.create_task(shared())
    stayer = asyncio.create_task(shared())
    await in_flight(source)
    quitter.cancel()
    source.gate.set()
    assert await stayer == 0
    assert quitter.cancelled()
