"""Removing a deleted model's files from the object store, retried until the store confirms.

A delete records each removal in the same transaction that deletes the model, then tries it at once; what the
store could not do (unreachable, refused) stays recorded and the server's housekeeping tries it again.
"""

from __future__ import annotations

import logging

from model_manager.service.context import ServiceContext
from model_manager.store import removals
from model_manager.store.database import Conn

log = logging.getLogger(__name__)


class FileRemoval:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def schedule(self, conn: Conn, path: str, keep: set[str]) -> int:
        """Record, inside the caller's transaction, that the files under `path` (except `keep`) must go."""
        return await removals.schedule(conn, path, keep)

    async def run(self, removal_id: int, path: str, keep: set[str]) -> str:
        """Try one removal; "" when the files are gone, else what the store said (the removal stays recorded)."""
        try:
            removed = await self.ctx.objects.delete_model_files(path, keep=keep)
        except Exception as e:
            log.warning("could not remove the files under %s yet (%s); will retry", path, e)
            async with self.ctx.db.transaction() as conn:
                await removals.failed(conn, removal_id, str(e))
            return str(e) or type(e).__name__
        log.info("removed %d objects under %s", removed, path)
        async with self.ctx.db.transaction() as conn:
            await removals.done(conn, removal_id)
        return ""

    async def retry_pending(self) -> int:
        """Try every recorded removal again; return how many are still to do."""
        async with self.ctx.db.reading() as conn:
            todo = await removals.pending(conn)
        left = 0
        for removal_id, path, keep in todo:
            if await self.run(removal_id, path, keep):
                left += 1
        return left
