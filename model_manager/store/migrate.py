"""Apply the Alembic migrations to the configured database."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from model_manager.store.database import Database

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(db: Database) -> None:
    # In one transaction (DDL is transactional on PostgreSQL and SQLite): a failed migration changes nothing.
    async with db.transaction() as conn:
        await conn.run_sync(_upgrade)


class SchemaOutdated(Exception):
    """The database's schema is older (or newer) than this version's: `model-manager migrate` first."""


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def check_schema(db: Database) -> None:
    """Refuse to serve a database whose schema this version does not match: every query would fail later, one by
    one and as internal errors, instead of once and clearly at start."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    try:
        async with db.engine.connect() as conn:
            current = await conn.run_sync(_revision)
    except (OperationalError, OSError) as e:
        # Unreachable now: start anyway (not ready until it answers), as without this check.
        log.warning("could not check the database schema (%s); starting anyway", e)
        return
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at revision {current or 'none'} but this version needs {head}: run "
            "`model-manager migrate --config FILE` (or set database.autoMigrate: true)"
        )
