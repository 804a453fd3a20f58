"""A transaction holds every statement run in it, whichever way the statement runs: through SQLAlchemy, or
straight on the driver (the read path's statements, store/driver.py) even as the first one."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from model_manager.store import driver
from model_manager.store.database import Database
from model_manager.store.tables import storage_configs


async def test_a_direct_read_first_in_a_transaction_is_inside_it(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs every statement through SQLAlchemy")
    # now() is the transaction's start time: the same for every statement inside one, later for one outside.
    async with db.transaction() as conn:
        first = await driver.value(conn, select(func.now()))
        await asyncio.sleep(0.05)
        later = (await conn.execute(select(func.now()))).scalar()
    assert first == later


async def test_what_a_transaction_wrote_is_read_in_it_and_gone_after_a_failure(db: Database) -> None:
    row = {"tenant_id": "t-tx", "path_prefix": "p", "created_at": 1}
    count = select(func.count()).select_from(storage_configs).where(storage_configs.c.tenant_id == "t-tx")
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(storage_configs.insert().values(**row))
            assert await driver.value(conn, count) == 1  # its own write, read the direct way
            raise RuntimeError("fails after the write")
    async with db.reading() as conn:
        assert await driver.value(conn, count) == 0
    async with db.transaction() as conn:
        await conn.execute(storage_configs.insert().values(**row))
    async with db.reading() as conn:
        assert await driver.value(conn, count) == 1


async def test_a_cancelled_transaction_leaves_no_connection_inside_one(db: Database) -> None:
    """Cancelled while it waits: rolled back, and the pool's connections all answer outside any transaction."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the asyncpg transaction is PostgreSQL's")
    started = asyncio.Event()

    async def hold() -> None:
        async with db.transaction() as conn:
            await conn.execute(storage_configs.insert().values(tenant_id="t-cancel", path_prefix="p", created_at=1))
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(hold())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(3):
        async with db.reading() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None and not raw.is_in_transaction()
            found = select(func.count()).select_from(storage_configs).where(storage_configs.c.tenant_id == "t-cancel")
            assert await driver.value(conn, found) == 0
