"""Driver errors that mean "the database cannot serve right now" are 503 / UNAVAILABLE, whichever path meets them;
nothing a database says about itself surfaces as a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.core.errors import Unavailable
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.store.database import Database
from tests.fakes.postgres import refusing_postgres
from tests.helpers import WORKER, Api, rest_client


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


async def test_a_table_locked_by_another_session_is_503_until_released(
    postgres_db: Database, pg_url: str, tmp_path: Path
) -> None:
    """Another session (a migration, a DBA's transaction) holds base_models: calls end with Unavailable when the
    statement timeout passes, none waits for ever or fails otherwise, and the same pool serves once it is released."""
    db = Database(
        create_async_engine(pg_url, connect_args={"command_timeout": 1}, pool_size=2, max_overflow=0, pool_timeout=1)
    )
    api = Api(ServiceContext(db=db, objects=LocalStore(tmp_path / "objects")))
    locker = await asyncpg.connect(make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE base_models IN ACCESS EXCLUSIVE MODE")
        calls = [
            api.list(),
            api.get("org-a"),
            api.request_base("org/a", skip_source_check=True),
            api.worker.acquire_unloaded_base_model(WORKER, pb.AcquireUnloadedBaseModelRequest(holder="l")),
        ]
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            assert isinstance(outcome, Unavailable), outcome
        await lock.rollback()
        await api.request_base("org/a", skip_source_check=True)
        assert [m.id for m in (await api.list(include_loading_models=True)).data] == ["org/a"]
    finally:
        await locker.close()
        await db.close()
