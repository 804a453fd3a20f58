"""Lease expiry: one rule, applied by the server's sweeper and before claims.

A model whose loader stopped renewing its lease goes back to REQUESTED (or FAILED once out of attempts). The
server's housekeeping sweeps every `interval` even when no loader asks for work; claims sweep too, but at most once
per interval, since a draining loader asks many times a second and a sweep is as fresh as the housekeeping's.
"""

from __future__ import annotations

import logging

from model_manager.core import metrics
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
            metrics.LEASE_EVENTS.labels("expired").inc(n)
            log.warning("%d model(s) had an expired loader lease and were given back", n)
        return n

    async def expire_if_due(self) -> None:
        if self.ctx.clock() - self._swept_at >= self.interval:
            await self.expire()
