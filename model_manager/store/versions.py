"""The versions cached answers are valid under (migration 0013): a model id's row versions, a tenant's counters.

Both are read in batches: the requests that arrive together ask for all their keys in one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Select, String, any_, bindparam, func, literal, select, union_all

from model_manager.store import driver
from model_manager.store.database import Conn
from model_manager.store.tables import base_models, models, tenant_versions

ModelKey = tuple[str, str]  # (tenant, model id)
Fingerprint = tuple[int, ...]  # the sorted versions of the rows with one id: () when there are none


def _among(column: Any, name: str, postgresql: bool) -> Any:
    # PostgreSQL: one array parameter (a fixed statement text, prepared once); SQLite: an expanding IN list.
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


@functools.cache
def _model_versions(postgresql: bool) -> Select[Any]:
    parts = [
        select(t.c.tenant_id, t.c.model_id, t.c.version).where(
            _among(t.c.tenant_id, "tenants", postgresql), _among(t.c.model_id, "ids", postgresql)
        )
        for t in (base_models, models)
    ]
    return select(union_all(*parts).subquery())


async def model_versions(conn: Conn, keys: Collection[ModelKey]) -> dict[ModelKey, Fingerprint]:
    """The fingerprint of every key: a write to any row of that id (or a row appearing or going) changes it."""
    params = {"tenants": sorted({t for t, _ in keys}), "ids": sorted({m for _, m in keys})}
    rows = await driver.rows(conn, _model_versions(conn.dialect.name == "postgresql"), params)
    found: dict[ModelKey, list[int]] = {key: [] for key in keys}
    for tenant, model_id, version in rows:
        versions = found.get((tenant, model_id))
        if versions is not None:  # the query reads every tenant x id pair; only the asked ones count
            versions.append(int(version))
    return {key: tuple(sorted(v)) for key, v in found.items()}


@functools.cache
def _tenant_versions(postgresql: bool) -> Select[Any]:
    t = tenant_versions
    return select(t.c.tenant_id, t.c.loaded, t.c.changed).where(_among(t.c.tenant_id, "tenants", postgresql))


async def tenant_counters(conn: Conn, tenants: Collection[str]) -> dict[str, tuple[int, int]]:
    """(loaded, changed) of each tenant; (0, 0) for a tenant nothing was ever written for."""
    rows = await driver.rows(conn, _tenant_versions(conn.dialect.name == "postgresql"), {"tenants": sorted(tenants)})
    found = {tenant: (0, 0) for tenant in tenants}
    found.update({tenant: (int(loaded), int(changed)) for tenant, loaded, changed in rows})
    return found


_CHANGES = select(func.coalesce(func.sum(tenant_versions.c.changed), literal(0, BigInteger)))


async def change_count(conn: Conn) -> int:
    """Writes to any model so far (it only grows): what watchers poll to learn that something changed."""
    return int(await driver.value(conn, _CHANGES))
