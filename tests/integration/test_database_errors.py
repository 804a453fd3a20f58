"""Driver errors that mean "the database cannot serve right now" are 503 / UNAVAILABLE, whichever path meets them;
nothing a database says about itself surfaces as a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.errors import Unavailable
from model_manager.objectstore.local import LocalStore
from model_manager.service.context import ServiceContext
from model_manager.store.database import Database
from tests.fakes.postgres import refusing_postgres
from tests.helpers import rest_client


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("57P03", "the database system is starting up"),  # just after a restart
        ("57P01", "terminating connection due to administrator command"),
        ("53300", "sorry, too many clients already"),
        ("08006", "connection failure"),
    ],
)
async def test_a_database_that_cannot_serve_now_is_unavailable(sqlstate: str, message: str) -> None:
    async with refusing_postgres(sqlstate, message) as port:
        db = Database(create_async_engine(f"postgresql+asyncpg://mm@127.0.0.1:{port}/mm"))
        try:
            for session in (db.reading, db.transaction):
                with pytest.raises(Unavailable, match="database unavailable"):
                    async with session() as conn:
                        await conn.execute(text("SELECT 1"))
        finally:
            await db.close()


async def test_rest_answers_503_while_the_database_starts_up(tmp_path: Path) -> None:
    async with refusing_postgres() as port:
        db = Database(create_async_engine(f"postgresql+asyncpg://mm@127.0.0.1:{port}/mm"))
        ctx = ServiceContext(db=db, objects=LocalStore(tmp_path / "objects"))
        try:
            async with rest_client(ctx) as client:
                for path in ("/v1/models", "/v1/models/org-a"):
                    resp = await client.get(path)
                    body = await resp.json()
                    assert resp.status == 503, body
                    assert body["error"]["type"] == "unavailable"
        finally:
            await db.close()
