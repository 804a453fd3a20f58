"""Benchmark databases on the local PostgreSQL: created, migrated, filled fast with SQL, dropped."""

from __future__ import annotations

import asyncio
import os

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import PG_URL
from model_manager.service import model_config
from model_manager.store.database import Database
from model_manager.store.migrate import migrate


def async_url(name: str) -> str:
    return make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


async def create(name: str) -> None:
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Database(create_async_engine(async_url(name)))
    try:
        await migrate(db)
    finally:
        await db.close()


async def drop(name: str) -> None:
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fill(name: str, count: int, status: int = 3) -> None:
    """`count` base models inserted by one statement (the counters' triggers included)."""
    conn = await asyncpg.connect(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    try:
        await conn.execute(
            """INSERT INTO base_models (tenant_id, project_id, model_id, path, formats, source_repository,
                   loading_status, activation_status, config, created_at, updated_at)
               SELECT 'default-tenant-id', '', 'org-model-' || lpad(g::text, 7, '0'),
                      'models/base-models/org/model-' || g, '2', 2, $1, 2, $2, 1700000000 + g, 1700000000 + g
               FROM generate_series(1, $3) g""",
            status,
            model_config.encode(model_config.default_config()),
            count,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def bench_db_name(what: str) -> str:
    return f"mm_bench_{what}_{os.getpid()}"


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]
