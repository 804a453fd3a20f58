"""Aliases and their history (tables `aliases`, `alias_changes`), and the `aliased` flag of the models they name.

Every write runs in the caller's transaction. Setting or deleting an alias also updates the rows of the models it
named and names (their `aliased` flag): those updates stamp the rows' versions and the tenant's counters through
the triggers of migration 0013, so cached answers for those models and the tenant's listings are rebuilt with the
alias names, on every replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, insert, or_, select, update

from model_manager.store.database import Conn
from model_manager.store.tables import alias_changes, aliases, base_models, models


@dataclass(frozen=True)
class AliasRow:
    name: str
    model_id: str
    project_id: str
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Change:
    from_model_id: str
    to_model_id: str
    changed_at: int
    changed_by: str


def _row(r: Sequence[object]) -> AliasRow:
    name, model_id, project_id, created, updated = r
    return AliasRow(str(name), str(model_id), str(project_id), int(created), int(updated))  # type: ignore[call-overload]


_COLUMNS = (aliases.c.name, aliases.c.model_id, aliases.c.project_id, aliases.c.created_at, aliases.c.updated_at)


async def find(conn: Conn, tenant_id: str, name: str, for_update: bool = False) -> AliasRow | None:
    q = select(*_COLUMNS).where(aliases.c.tenant_id == tenant_id, aliases.c.name == name)
    if for_update:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return _row(row) if row is not None else None


async def visible(conn: Conn, tenant_id: str, project_id: str) -> list[AliasRow]:
    """The aliases a caller of `project_id` sees: its project's and the tenant's, by name."""
    q = (
        select(*_COLUMNS)
        .where(aliases.c.tenant_id == tenant_id, aliases.c.project_id.in_(("", project_id)))
        .order_by(aliases.c.name)
    )
    return [_row(r) for r in (await conn.execute(q)).all()]


async def history(conn: Conn, tenant_id: str, name: str) -> list[Change]:
    c = alias_changes.c
    q = select(c.from_model_id, c.to_model_id, c.changed_at, c.changed_by).where(
        c.tenant_id == tenant_id, c.name == name
    )
    rows = (await conn.execute(q.order_by(c.id))).all()
    return [Change(str(a), str(b), int(at), str(by)) for a, b, at, by in rows]


async def names_for(
    conn: Conn, tenant_id: str, model_ids: Sequence[str], project_id: str | None
) -> dict[str, list[str]]:
    """The names of the aliases of `model_ids` that `project_id` sees (None: every project), by model id."""
    q = select(aliases.c.model_id, aliases.c.name).where(
        aliases.c.tenant_id == tenant_id, aliases.c.model_id.in_(list(model_ids))
    )
    if project_id is not None:
        q = q.where(aliases.c.project_id.in_(("", project_id)))
    found: dict[str, list[str]] = {}
    for model_id, name in (await conn.execute(q.order_by(aliases.c.name))).all():
        found.setdefault(str(model_id), []).append(str(name))
    return found


async def naming(conn: Conn, tenant_id: str, model_ids: Sequence[str]) -> list[str]:
    """Every alias of the tenant that names one of `model_ids`, in any project."""
    q = select(aliases.c.name).where(aliases.c.tenant_id == tenant_id, aliases.c.model_id.in_(list(model_ids)))
    return [str(n) for n in (await conn.scalars(q.order_by(aliases.c.name))).all()]


async def taken(conn: Conn, tenant_id: str, names: Sequence[str]) -> str | None:
    """The first of `names` that is an alias of the tenant."""
    q = select(aliases.c.name).where(aliases.c.tenant_id == tenant_id, aliases.c.name.in_(list(names)))
    found = set((await conn.scalars(q)).all())
    return next((n for n in names if n in found), None)


async def model_id_exists(conn: Conn, tenant_id: str, name: str) -> bool:
    """Whether any model of the tenant, in any project and in any state, has the id `name` (or is requested as a
    Hugging Face id that loads as `name`)."""
    for t in (base_models, models):
        same = or_(t.c.model_id == name, func.replace(t.c.model_id, "/", "-") == name)
        if (await conn.execute(select(exists().where(t.c.tenant_id == tenant_id, same)))).scalar():
            return True
    return False


async def put(conn: Conn, tenant_id: str, project_id: str, name: str, model_id: str, now: int, by: str) -> None:
    """Create the alias or point it at `model_id`, in one change, and record it."""
    before = await find(conn, tenant_id, name, for_update=True)
    if before is None:
        await conn.execute(
            insert(aliases).values(
                tenant_id=tenant_id, project_id=project_id, name=name, model_id=model_id, created_at=now, updated_at=now
            )
        )
    else:
        q = update(aliases).where(aliases.c.tenant_id == tenant_id, aliases.c.name == name)
        await conn.execute(q.values(model_id=model_id, updated_at=now))
    await conn.execute(
        insert(alias_changes).values(
            tenant_id=tenant_id,
            name=name,
            from_model_id=before.model_id if before is not None else "",
            to_model_id=model_id,
            changed_at=now,
            changed_by=by,
        )
    )
    await _flag(conn, tenant_id, {model_id, *([before.model_id] if before else [])})


async def remove(conn: Conn, tenant_id: str, name: str) -> None:
    before = await find(conn, tenant_id, name, for_update=True)
    if before is None:
        return
    await conn.execute(delete(aliases).where(aliases.c.tenant_id == tenant_id, aliases.c.name == name))
    changes = alias_changes.c
    await conn.execute(delete(alias_changes).where(changes.tenant_id == tenant_id, changes.name == name))
    await _flag(conn, tenant_id, {before.model_id})


async def _flag(conn: Conn, tenant_id: str, model_ids: set[str]) -> None:
    """Set each model's `aliased` flag to whether an alias names it now. The update runs even when the flag does
    not change: it is what stamps the rows' versions, so their cached answers show the new names."""
    for model_id in model_ids:
        named = exists().where(aliases.c.tenant_id == tenant_id, aliases.c.model_id == model_id)
        for t in (base_models, models):
            q = update(t).where(t.c.tenant_id == tenant_id, t.c.model_id == model_id).values(aliased=named)
            await conn.execute(q)
