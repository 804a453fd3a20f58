"""The server's periodic work: give back models whose loader vanished, and finish file removals a delete could not.

Every replica runs it; both jobs are idempotent. A failing round (the database or the store is down) is logged and
the next round tries again: an outage must never stop the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from model_manager.core.aio import wait_for_stop

log = logging.getLogger(__name__)


async def run_housekeeping(
    jobs: Sequence[tuple[str, Callable[[], Awaitable[object]]]], interval: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        for name, job in jobs:
            try:
                await job()
            except Exception as e:
                log.warning("%s failed (%s); trying again in %.0fs", name, e, interval)
        await wait_for_stop(stop, interval)
