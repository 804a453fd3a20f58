"""Readiness, as the REST front's /readyz asks for it: whether the database answers."""

from __future__ import annotations

from model_manager.service.context import ServiceContext


class Health:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def ready(self) -> bool:
        return await self.ctx.db.ping()
