"""The migrations produce exactly the schema of the table definitions, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from model_manager.store.database import Database
from model_manager.store.tables import metadata


def _diff(sync_conn: Any) -> list[Any]:
    return compare_metadata(MigrationContext.configure(sync_conn), metadata)  # type: ignore[no-any-return]


async def test_migrations_match_the_table_definitions(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []
