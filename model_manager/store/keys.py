"""API key rows: insert, look up by key id, list, revoke, note use; and the projects a tenant's keys name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row

from model_manager.store.catalog import now_seconds
from model_manager.store.database import Conn
from model_manager.store.tables import api_keys


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    secret_sha256: str
    tenant_id: str
    organization_id: str
    project_id: str
    role: str
    cluster: str
    name: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None


def _record(row: Row[Any]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(**{f: m[f] for f in KeyRecord.__dataclass_fields__})


async def insert_key(conn: Conn, values: dict[str, Any]) -> KeyRecord:
    row = (await conn.execute(insert(api_keys).values(created_at=now_seconds(), **values).returning(*api_keys.c))).one()
    return _record(row)


async def find_key(conn: Conn, key_id: str) -> KeyRecord | None:
    row = (await conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
    return _record(row) if row else None


async def list_keys(conn: Conn, tenant_id: str | None) -> list[KeyRecord]:
    q = select(api_keys).order_by(api_keys.c.tenant_id, api_keys.c.created_at, api_keys.c.key_id)
    if tenant_id is not None:
        q = q.where(api_keys.c.tenant_id == tenant_id)
    return [_record(r) for r in (await conn.execute(q)).all()]


async def revoke_key(conn: Conn, key_id: str) -> KeyRecord | None:
    """Mark the key revoked (keeping the first revocation time); None when there is no such key."""
    t = api_keys
    await conn.execute(update(t).where(t.c.key_id == key_id, t.c.revoked_at.is_(None)).values(revoked_at=now_seconds()))
    return await find_key(conn, key_id)


async def note_use(conn: Conn, key_id: str, when: int) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=when))


async def tenant_projects(conn: Conn, tenant_id: str) -> dict[str, str]:
    """The projects a tenant's keys name (revoked ones too: the project existed), with their organizations."""
    t = api_keys
    q = select(t.c.project_id, t.c.organization_id).where(t.c.tenant_id == tenant_id, t.c.project_id != "").distinct()
    return {project: org for project, org in (await conn.execute(q)).all()}
