"""Small asyncio helpers."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What made a TaskGroup fail: its first leaf exception that is not a cancellation (the other tasks were
    cancelled because of it), or a cancellation when that is all there is."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        e = pending.pop(0)
        if isinstance(e, BaseExceptionGroup):
            pending[:0] = e.exceptions
        else:
            leaves.append(e)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])


class BatchedRead(Generic[K, V]):
    """A read by key that callers share without ever getting an answer older than their call.

    A caller waits for the first read that *starts* after it arrived: while one read is in flight, everyone who
    arrives adds their key to the next one, which starts when the current one ends and reads all its keys at once.
    Under load, one read serves a whole batch of callers (one database round trip instead of one per request),
    and each caller still sees every write that was acknowledged before it called.
    """

    def __init__(self, read: Callable[[frozenset[K]], Awaitable[dict[K, V]]]) -> None:
        self._read = read
        self._next: dict[K, list[asyncio.Future[V]]] | None = None  # the keys of the next read, and who waits
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to tasks

    async def __call__(self, key: K) -> V:
        if self._next is None:
            self._next = {}
            if self._task is None:
                self._task = asyncio.create_task(self._serve())
        # A future per caller, not one shared: a caller that gives up (a cancelled request) cancels only its own.
        mine: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._next.setdefault(key, []).append(mine)
        return await mine

    async def _serve(self) -> None:
        try:
            while self._next is not None:
                batch, self._next = self._next, None
                try:
                    values = await self._read(frozenset(batch))
                except asyncio.CancelledError:
                    _settle(batch, None)
                    raise
                except Exception as e:
                    _settle(batch, e)
                else:
                    _settle(batch, values)
        finally:
            self._task = None
            if self._next is not None:  # stopped by cancellation: nobody will serve these callers
                _settle(self._next, None)
                self._next = None


def _settle(batch: dict[K, list[asyncio.Future[V]]], outcome: dict[K, V] | Exception | None) -> None:
    """Answer every caller still waiting: its value, the read's error, or cancelled (None)."""
    for key, waiting in batch.items():
        for future in waiting:
            if future.done():  # its caller gave up
                continue
            if outcome is None:
                future.cancel()
            elif isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome[key])


class SharedRead(Generic[T]):
    """A BatchedRead of one value: callers that arrive together share one read, none gets one older than its call."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        async def one(_: frozenset[None]) -> dict[None, T]:
            return {None: await read()}

        self._batched: BatchedRead[None, T] = BatchedRead(one)

    async def __call__(self) -> T:
        return await self._batched(None)


async def skipping(chunks: AsyncIterator[bytes], skip: int) -> AsyncIterator[bytes]:
    """`chunks` without their first `skip` bytes: a server that ignores a Range request sends the whole body."""
    async for chunk in chunks:
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
            if not chunk:
                continue
        yield chunk
