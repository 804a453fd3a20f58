"""Small asyncio helpers."""

import asyncio
import contextlib


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
