"""Keyset pagination over both model tables in the public listing order.

Order: active base, active fine-tuned, inactive base, inactive fine-tuned; by id inside each group. Each group is
one range scan of its listing index, so a page costs the same whatever the catalogue's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, select

from model_manager.store.catalog import base_visibility, loaded
from model_manager.store.database import Conn
from model_manager.store.records import ACTIVE, INACTIVE, LOADED_STATUSES, Kind, ModelRecord, to_record
from model_manager.store.tables import base_models, model_counts, models

GROUPS: tuple[tuple[int, Kind], ...] = (
    (ACTIVE, Kind.BASE),
    (ACTIVE, Kind.FINE_TUNED),
    (INACTIVE, Kind.BASE),
    (INACTIVE, Kind.FINE_TUNED),
)


@dataclass(frozen=True)
class ListScope:
    tenant_id: str
    project_id: str
    include_loading: bool


def _visible(kind: Kind, scope: ListScope) -> ColumnElement[bool]:
    if kind is Kind.BASE:
        cond = base_visibility(scope.tenant_id, scope.project_id)
    else:
        t = models
        cond = and_(t.c.tenant_id == scope.tenant_id, t.c.project_id == scope.project_id, t.c.is_published.is_(True))
    if not scope.include_loading:
        cond = and_(cond, loaded(kind))
    return cond


def _group_query(kind: Kind, activation: int, scope: ListScope) -> Select:  # type: ignore[type-arg]
    t = kind.table
    return select(t).where(_visible(kind, scope), t.c.activation_status == activation)


async def group_of(conn: Conn, scope: ListScope, model_id: str) -> int | None:
    """Index in GROUPS of the visible model `model_id`, or None when the caller cannot see it."""
    for kind in (Kind.BASE, Kind.FINE_TUNED):
        t = kind.table
        q = select(t.c.activation_status).where(_visible(kind, scope), t.c.model_id == model_id).limit(1)
        activation = (await conn.execute(q)).scalar()
        if activation is not None:
            return GROUPS.index((ACTIVE if activation == ACTIVE else INACTIVE, kind))
    return None


async def page(
    conn: Conn, scope: ListScope, limit: int, after: tuple[int, str] | None
) -> tuple[list[ModelRecord], bool]:
    """Up to `limit` models after `after` (group index, id), and whether another model follows."""
    want = limit + 1  # one more than the page tells exactly whether there is a next page
    out: list[ModelRecord] = []
    start = after[0] if after else 0
    for index in range(start, len(GROUPS)):
        activation, kind = GROUPS[index]
        q = _group_query(kind, activation, scope)
        if after and index == after[0]:
            q = q.where(kind.table.c.model_id > after[1])
        q = q.order_by(kind.table.c.model_id).limit(want - len(out))
        out.extend(to_record(kind, r) for r in (await conn.execute(q)).all())
        if len(out) >= want:
            break
    return out[:limit], len(out) > limit


async def count(conn: Conn, scope: ListScope) -> int:
    """How many models the listing holds across all pages: read from the trigger-kept counters, minus the global
    base models the caller's project shadows (a join over that project's own base models only)."""
    c = model_counts
    total = func.coalesce(func.sum(c.c.n), 0)
    loaded_only = [] if scope.include_loading else [c.c.loaded == 1]
    base = select(total).where(
        c.c.tenant_id == scope.tenant_id, c.c.kind == 0, c.c.project_id.in_(("", scope.project_id)), *loaded_only
    )
    fine_tuned = select(total).where(
        c.c.tenant_id == scope.tenant_id,
        c.c.kind == 1,
        c.c.project_id == scope.project_id,
        c.c.published == 1,
        *loaded_only,
    )
    own, glob = base_models, base_models.alias("glob")
    shadowed = (
        select(func.count())
        .select_from(
            own.join(
                glob,
                and_(glob.c.tenant_id == own.c.tenant_id, glob.c.model_id == own.c.model_id, glob.c.project_id == ""),
            )
        )
        .where(own.c.tenant_id == scope.tenant_id, own.c.project_id == scope.project_id)
    )
    if not scope.include_loading:
        shadowed = shadowed.where(glob.c.loading_status.in_(LOADED_STATUSES))
    q = select(base.scalar_subquery() + fine_tuned.scalar_subquery() - shadowed.scalar_subquery())
    return int((await conn.execute(q)).scalar_one())


async def all_loaded(conn: Conn, tenant_id: str) -> list[ModelRecord]:
    """Worker listing: every loaded base model of the tenant, then every loaded, published fine-tuned model."""
    b, m = base_models, models
    bases = await conn.execute(
        select(b).where(b.c.tenant_id == tenant_id, loaded(Kind.BASE)).order_by(b.c.model_id, b.c.project_id)
    )
    fts = await conn.execute(
        select(m)
        .where(m.c.tenant_id == tenant_id, m.c.is_published.is_(True), loaded(Kind.FINE_TUNED))
        .order_by(m.c.model_id)
    )
    return [to_record(Kind.BASE, r) for r in bases] + [to_record(Kind.FINE_TUNED, r) for r in fts]
