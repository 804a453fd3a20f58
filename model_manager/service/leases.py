"""Lease expiry: one rule, applied by the server's sweeper and before claims.

A model whose loader stopped renewing its lease goes back to REQUESTED (or FAILED once out of attempts). The
server sweeps every `interval` even when no loader asks for work; claims sweep too, but at most once per interval,
since a draining loader asks many times a second and a sweep is as fresh as the sweeper's.
"""

from __future__ import annotations

import asyncio
import logging

from model_manager.aio import wait_for_stop
from model_manager.service.context import ServiceContext
from model_manager.store import loading

log = logging.getLogger(__name__)


class Leases:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._swept_at = float("-inf")

    @property
    def interval(self) -> float:
        return min(self.ctx.lease_seconds / 4, 10.0)

    async def expire(self) -> int:
        """Give back every model whose lease has expired; return how many."""
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as conn:
            n = await loading.expire_leases(conn, now, self.ctx.max_attempts)
        self._swept_at = now
        if n:
            log.warning("%d model(s) had an expired loader lease and were given back", n)
        return n

    async def expire_if_due(self) -> None:
        if self.ctx.clock() - self._swept_at >= self.interval:
            await self.expire()

    async def sweep(self, stop: asyncio.Event) -> None:
        """The server's sweeper: expire leases every interval until `stop`."""
        while not stop.is_set():
            try:
                await self.expire()
            except Exception as e:
                # A database outage must not stop the process: the API answers UNAVAILABLE meanwhile, and the next
                # sweep catches up once the database is back.
                log.warning("lease sweep failed (%s); retrying in %.0fs", e, self.interval)
            await wait_for_stop(stop, self.interval)
