"""The one async engine and its transactions. Driver errors become service errors here and nowhere else."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from model_manager.config import Config, DatabaseConfig
from model_manager.core.errors import ServiceError, Unavailable

log = logging.getLogger(__name__)

Conn = AsyncConnection
PING_SECONDS = 2.0
MAX_STATEMENT_BYTES = 64 * 1024

# SQLSTATE classes that say the database cannot serve right now, not that the request is wrong: 08 connection
# exceptions, 53 insufficient resources (too many connections, out of memory), 57 operator intervention (shutting
# down, "cannot connect now" while it starts up or recovers, a statement cancelled by statement_timeout).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a driver error, through SQLAlchemy's wrapper (`orig`) and exception chaining; "" if none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None)
        if isinstance(code, str) and code:
            return code
        current = getattr(current, "orig", None) or current.__cause__
    return ""


def is_unavailable(error: BaseException) -> bool:
    """Whether a driver error means "try again later" (503 / UNAVAILABLE) rather than a defect."""
    return sqlstate(error)[:2] in _UNAVAILABLE_CLASSES


def postgres_url(db: DatabaseConfig, database: str | None = None) -> URL:
    password = os.environ.get(db.password_env_name) if db.password_env_name else None
    return URL.create(
        "postgresql+asyncpg",
        username=db.username,
        password=password,
        host=db.host,
        port=db.port,
        database=database or db.database,
    )


def connect_args(db: DatabaseConfig) -> dict[str, Any]:
    # JIT compilation costs tens of milliseconds and pays off only for long analytic queries, never for ours.
    args: dict[str, Any] = {
        "server_settings": {"jit": "off"},
        # A database that accepts TCP but never answers (frozen, partitioned) must fail calls fast, not hang them.
        "timeout": db.connect_timeout,
        "command_timeout": db.statement_timeout,
        # asyncpg prepares a statement once per connection only when its text is at most this long (15 KiB by
        # default); a listing page's statement (both tables' columns, one query per group) is longer, and was
        # prepared again on every request, a round trip and a plan each time.
        "max_cacheable_statement_size": MAX_STATEMENT_BYTES,
    }
    if db.ssl_root_cert:
        # A private CA: verify against it, checking the host name only in verify-full (as libpq does).
        context = ssl.create_default_context(cafile=db.ssl_root_cert)
        context.check_hostname = db.ssl_mode == "verify-full"
        args["ssl"] = context
    elif db.ssl_mode:
        args["ssl"] = db.ssl_mode  # asyncpg takes libpq's sslmode names
    return args


def _sqlite_engine(path: str) -> AsyncEngine:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30})

    # SQLite upgrades a reader to a writer lazily and then fails at once with "database is locked" when
    # another connection wrote in between. Taking the write lock at BEGIN makes every transaction wait its
    # turn instead (busy timeout above), which also makes the status-guarded claim race-free.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":  # reads take no lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def _asyncpg_of(conn: Conn) -> asyncpg.Connection:
    return (await conn.get_raw_connection()).driver_connection


class Database:
    """Owns the engine. `transaction()` is the session factory every caller uses."""

    def __init__(self, engine: AsyncEngine, autocommit: bool = False) -> None:
        """`autocommit`: the engine's connections are autocommit already (from_config on PostgreSQL); others
        (SQLite, the engines tests make) are switched at each checkout, which costs a little every time."""
        self.engine = engine
        self._switch = not autocommit

    @classmethod
    def from_config(cls, config: Config) -> Database:
        if config.database is None:
            return cls(_sqlite_engine(config.sqlite_path))
        db = config.database
        engine = create_async_engine(
            # No pre-ping: it costs a round trip per transaction; a dropped connection surfaces as Unavailable and
            # is replaced, and pool_recycle retires connections before servers or proxies time them out.
            postgres_url(db),
            connect_args=connect_args(db),
            pool_size=db.pool_size,
            max_overflow=db.max_overflow,
            pool_recycle=1800,
            pool_timeout=db.pool_timeout,
            # Transactions are asyncpg's (transaction() below); SQLAlchemy never begins one of its own here.
            isolation_level="AUTOCOMMIT",
        )
        return cls(engine, autocommit=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        if self.engine.dialect.name != "postgresql":
            async with self._translated(), self.engine.begin() as conn:
                yield conn
            return
        # On PostgreSQL the transaction is asyncpg's own, begun here, and SQLAlchemy runs its statements in it
        # without a transaction of its own (autocommit). SQLAlchemy would begin lazily, at its first statement,
        # so a statement run straight on asyncpg before that one would fall outside the transaction; this way
        # every statement, whichever way it runs (store/driver.py), is inside it from the start.
        async with self._translated(), self._autocommit() as conn:
            raw = await _asyncpg_of(conn)
            try:
                async with raw.transaction():
                    yield conn
            finally:
                if raw.is_in_transaction():
                    # The rollback itself failed (a lost connection, a cancellation while it ran): a connection
                    # still in a transaction must never go back to the pool.
                    await conn.invalidate()

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[Conn]:
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT") if self._switch else conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Conn]:
        """For requests that only read: autocommit, so no BEGIN and COMMIT round trips around the queries."""
        async with self._translated(), self._autocommit() as conn:
            yield conn

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except ServiceError:
            raise
        except (OperationalError, OSError, ConnectionError, PoolTimeout, asyncpg.InterfaceError) as e:
            # OSError includes TimeoutError; asyncpg's own errors come from the transactions it runs (BEGIN,
            # COMMIT, ROLLBACK), which no SQLAlchemy wrapper sees.
            log.warning("database unavailable: %s", e)
            raise Unavailable("database unavailable, try again") from e
        except asyncpg.PostgresError as e:
            if not is_unavailable(e):
                raise
            log.warning("database unavailable: %s", e)
            raise Unavailable("database unavailable, try again") from e
        except DBAPIError as e:
            if e.connection_invalidated or is_unavailable(e):
                log.warning("database unavailable: %s", e)
                raise Unavailable("database unavailable, try again") from e
            raise

    def connections_in_use(self) -> int:
        """Connections checked out of the pool right now."""
        checked_out = getattr(self.engine.pool, "checkedout", None)
        return int(checked_out()) if callable(checked_out) else 0

    async def ping(self) -> bool:
        """Whether the database answers a trivial query within PING_SECONDS (readiness must answer fast even when
        the database accepts connections but never replies)."""
        try:
            async with asyncio.timeout(PING_SECONDS), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()


async def create_database_if_missing(db: DatabaseConfig) -> None:
    """`database.createDatabase`: connect to the maintenance database and create ours when absent."""
    engine = create_async_engine(
        postgres_url(db, "postgres"), connect_args=connect_args(db), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": db.database})
            if not exists:
                quoted = db.database.replace('"', '""')
                await conn.execute(text(f'CREATE DATABASE "{quoted}"'))
                log.info("created database %s", db.database)
    finally:
        await engine.dispose()
