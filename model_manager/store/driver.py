"""The read paths' statements run straight on asyncpg, compiled once by SQLAlchemy.

SQLAlchemy's execution path (bind processing, result metadata, the greenlet hop, row objects) cost more than the
queries themselves on the hot reads. Here each statement is compiled once for PostgreSQL into its SQL text and
parameter order, and then run as asyncpg runs a hand-written query (prepared once per connection by asyncpg's own
statement cache). The statements stay SQLAlchemy expressions, so SQLite runs the same ones through SQLAlchemy.

Inside a transaction too: on PostgreSQL the transaction is asyncpg's own, begun when it opens
(`Database.transaction`), so a statement run here is in it like every other.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from model_manager.core.errors import Unavailable
from model_manager.store.database import Conn

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in $n order
    defaults: dict[str, Any]  # values the statement carries itself (literals)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] if n in params else self.defaults[n] for n in self.names]


@functools.cache
def _compiled(stmt: Select[Any]) -> _Compiled:
    c = stmt.compile(dialect=_DIALECT)
    if c.post_compile_params:
        # Expanding IN lists are rendered per execution; the hot statements must be fixed text.
        names = ", ".join(p.key for p in c.post_compile_params)
        raise TypeError(f"statement has parameters expanded at execution ({names}): write them as literals")
    return _Compiled(str(c), tuple(c.positiontup or ()), dict(c.params))


async def _asyncpg(conn: Conn) -> asyncpg.Connection | None:
    driver = (await conn.get_raw_connection()).driver_connection
    return driver if isinstance(driver, asyncpg.Connection) else None


async def rows(conn: Conn, stmt: Select[Any], params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
    """All rows of `stmt` (positional sequences, in the statement's column order)."""
    params = params or {}
    driver = await _asyncpg(conn)
    if driver is None:
        result = await conn.execute(stmt, params)
        return list(result.all())
    compiled = _compiled(stmt)
    try:
        found: list[asyncpg.Record] = await driver.fetch(compiled.sql, *compiled.args(params))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        # As the store handles driver errors elsewhere: a connection left in an unknown state (a timed-out query)
        # is discarded, never returned to the pool, and the caller gets Unavailable.
        await conn.invalidate()
        raise Unavailable("database unavailable, try again") from e
    return found


async def value(conn: Conn, stmt: Select[Any], params: Mapping[str, Any] | None = None) -> Any:
    """The first column of the first row of `stmt`, or None when it returns no row."""
    found = await rows(conn, stmt, params)
    return found[0][0] if found else None
