"""Pushes of models to OCI registries (table `model_pushes`): created by the request, advanced by the server that
runs the push, read by whoever follows it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import insert, select, update

from model_manager.store.database import Conn
from model_manager.store.tables import model_pushes


@dataclass(frozen=True)
class PushRow:
    push_id: str
    tenant_id: str
    project_id: str
    model_id: str
    destination: str
    status: int
    bytes_total: int
    bytes_done: int
    bytes_skipped: int
    files_total: int
    files_done: int
    manifest_digest: str
    failure_reason: str
    created_at: int
    updated_at: int


_COLUMNS = [model_pushes.c[f.name] for f in fields(PushRow)]


async def insert_push(conn: Conn, row: PushRow) -> None:
    await conn.execute(insert(model_pushes).values(**row.__dict__))


async def find(conn: Conn, tenant_id: str, push_id: str) -> PushRow | None:
    q = select(*_COLUMNS).where(model_pushes.c.tenant_id == tenant_id, model_pushes.c.push_id == push_id)
    row = (await conn.execute(q)).first()
    return PushRow(*row) if row is not None else None


async def visible(conn: Conn, tenant_id: str, project_id: str, model_id: str, limit: int) -> list[PushRow]:
    """The pushes a caller of `project_id` sees (its project's and the tenant's), of `model_id` ("" for any),
    newest first."""
    q = select(*_COLUMNS).where(model_pushes.c.tenant_id == tenant_id, model_pushes.c.project_id.in_(("", project_id)))
    if model_id:
        q = q.where(model_pushes.c.model_id == model_id)
    q = q.order_by(model_pushes.c.created_at.desc(), model_pushes.c.push_id).limit(limit)
    return [PushRow(*r) for r in (await conn.execute(q)).all()]


async def running_to(conn: Conn, tenant_id: str, destination: str, status: int) -> list[PushRow]:
    """The tenant's pushes to `destination` in `status` (the running ones), newest first."""
    q = (
        select(*_COLUMNS)
        .where(
            model_pushes.c.tenant_id == tenant_id,
            model_pushes.c.destination == destination,
            model_pushes.c.status == status,
        )
        .order_by(model_pushes.c.created_at.desc())
    )
    return [PushRow(*r) for r in (await conn.execute(q)).all()]


async def change(conn: Conn, push_id: str, only_in: int, **values: Any) -> bool:
    """Set `values` on the push while it is in status `only_in`; False when it is not (any more)."""
    q = update(model_pushes).where(model_pushes.c.push_id == push_id, model_pushes.c.status == only_in)
    result = await conn.execute(q.values(**values))
    return bool(result.rowcount)


async def last_destination(conn: Conn, tenant_id: str, model_id: str, registry: str, status: int) -> str:
    """The destination on `registry` the model was last pushed to with `status` (succeeded), or ""."""
    q = (
        select(model_pushes.c.destination)
        .where(
            model_pushes.c.tenant_id == tenant_id,
            model_pushes.c.model_id == model_id,
            model_pushes.c.status == status,
            model_pushes.c.destination.startswith(registry + "/", autoescape=True),
        )
        .order_by(model_pushes.c.updated_at.desc())
        .limit(1)
    )
    return str((await conn.execute(q)).scalar() or "")
