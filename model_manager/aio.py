"""Small asyncio helpers."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
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
        self._next: tuple[set[K], asyncio.Future[dict[K, V]]] | None = None
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to tasks

    async def __call__(self, key: K) -> V:
        if self._next is None:
            self._next = (set(), asyncio.get_running_loop().create_future())
            if self._task is None:
                self._task = asyncio.create_task(self._serve())
        keys, values = self._next
        keys.add(key)
        # Shielded: a caller that gives up (a cancelled request) must not cancel the read others wait for.
        return (await asyncio.shield(values))[key]

    async def _serve(self) -> None:
        try:
            while self._next is not None:
                (keys, batch), self._next = self._next, None
                try:
                    values = await self._read(frozenset(keys))
                except asyncio.CancelledError:
                    batch.cancel()
                    raise
                except Exception as e:
                    batch.set_exception(e)
                    batch.exception()  # retrieved here: a batch whose callers all gave up must not log it
                else:
                    batch.set_result(values)
        finally:
            self._task = None
            if self._next is not None:  # stopped by cancellation: nobody will serve these callers
                self._next[1].cancel()
                self._next = None


class SharedRead(Generic[T]):
    """A BatchedRead of one value: callers that arrive together share one read, none gets one older than its call."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        async def one(_: frozenset[None]) -> dict[None, T]:
            return {None: await read()}

        self._batched: BatchedRead[None, T] = BatchedRead(one)

    async def __call__(self) -> T:
        return await self._batched(None)
