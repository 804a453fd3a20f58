"""File removals still to do: scheduled with the delete that orphaned the files, done when the store confirms."""

from __future__ import annotations

import json

from sqlalchemy import delete, insert, select, update

from model_manager.store.catalog import now_seconds
from model_manager.store.database import Conn
from model_manager.store.tables import pending_deletions


async def schedule(conn: Conn, path: str, keep: set[str]) -> int:
    q = insert(pending_deletions).values(path=path, keep=json.dumps(sorted(keep)), created_at=now_seconds())
    return int((await conn.execute(q.returning(pending_deletions.c.id))).scalar_one())


async def done(conn: Conn, removal_id: int) -> None:
    await conn.execute(delete(pending_deletions).where(pending_deletions.c.id == removal_id))


async def failed(conn: Conn, removal_id: int, error: str) -> None:
    t = pending_deletions
    await conn.execute(update(t).where(t.c.id == removal_id).values(attempts=t.c.attempts + 1, last_error=error))


async def pending(conn: Conn, limit: int = 100) -> list[tuple[int, str, set[str]]]:
    t = pending_deletions
    rows = (await conn.execute(select(t.c.id, t.c.path, t.c.keep).order_by(t.c.id).limit(limit))).all()
    return [(r.id, r.path, set(json.loads(r.keep))) for r in rows]
