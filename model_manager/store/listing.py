"""Keyset pagination over both model tables in the public listing order.

Order: active base, active fine-tuned, inactive base, inactive fine-tuned; by id inside each group. Each group is
one range scan of its listing index, so a page costs the same whatever the catalogue's size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)

from model_manager.store import driver
from model_manager.store.catalog import is_loaded, loaded, project_visibility
from model_manager.store.database import Conn
from model_manager.store.records import Activation, Kind, ModelRecord, to_record
from model_manager.store.tables import base_models, model_counts, models

GROUPS: tuple[tuple[int, Kind], ...] = (
    (Activation.ACTIVE, Kind.BASE),
    (Activation.ACTIVE, Kind.FINE_TUNED),
    (Activation.INACTIVE, Kind.BASE),
    (Activation.INACTIVE, Kind.FINE_TUNED),
)


@dataclass(frozen=True)
class Page:
    """A listing page as the store found it; the fronts write it in their own wire form."""

    records: list[ModelRecord]
    has_more: bool
    total: int


@dataclass(frozen=True)
class Filters:
    """Only models of this format (its number), architecture or quantization (lower-cased); None/"": any."""

    format: int | None = None
    architecture: str = ""
    quantization: str = ""

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which filters are set: statements are built once per shape, the values are bound."""
        return (self.format is not None, bool(self.architecture), bool(self.quantization))


NO_FILTERS = Filters()


@dataclass(frozen=True)
class ListScope:
    tenant_id: str
    project_id: str
    include_loading: bool
    filters: Filters = NO_FILTERS


# Statements are built once per shape with bound parameters: building SQLAlchemy expressions for every request
# cost more than running them.
_TENANT = bindparam("tenant", type_=String)
_PROJECT = bindparam("project", type_=String)
_AFTER = bindparam("after", type_=String)
_LIMIT = bindparam("limit", type_=Integer)
_FORMAT = bindparam("format", type_=String)
_ARCHITECTURE = bindparam("architecture", type_=String)
_QUANTIZATION = bindparam("quantization", type_=String)
Shape = tuple[bool, bool, bool]


def _params(scope: ListScope, **more: object) -> dict[str, object]:
    params: dict[str, object] = {"tenant": scope.tenant_id, "project": scope.project_id}
    f = scope.filters
    if f.format is not None:
        params["format"] = f"%,{f.format},%"  # the stored formats are "2,1": matched as ",2,1," contains ",1,"
    if f.architecture:
        params["architecture"] = f.architecture
    if f.quantization:
        params["quantization"] = f.quantization
    return {**params, **more}


def _filtered(kind: Kind, shape: Shape) -> list[ColumnElement[bool]]:
    """The filters' conditions on `kind`'s table (fine-tuned models record no format: a format filter skips them)."""
    t = kind.table
    conds: list[ColumnElement[bool]] = []
    if shape[0]:
        conds.append((literal(",") + t.c.formats + literal(",")).like(_FORMAT) if kind is Kind.BASE else false())
    if shape[1]:
        conds.append(t.c.metadata_architecture == _ARCHITECTURE)
    if shape[2]:
        conds.append(t.c.metadata_quantization == _QUANTIZATION)
    return conds


@functools.cache
def _visible(kind: Kind, include_loading: bool) -> ColumnElement[bool]:
    if kind is Kind.BASE:
        cond = project_visibility(_TENANT, _PROJECT)
    else:
        t = models
        cond = and_(t.c.tenant_id == _TENANT, t.c.project_id == _PROJECT, t.c.is_published.is_(True))
    return cond if include_loading else and_(cond, loaded(kind))


# Both tables' columns, in one row layout: a page reads both tables in one statement.
_COLUMNS = tuple(dict.fromkeys([c.name for c in base_models.c] + [c.name for c in models.c]))


def _group_query(index: int, include_loading: bool, after: bool, shape: Shape) -> Select:  # type: ignore[type-arg]
    """One group's next models, in the shared row layout (NULL for the other table's columns)."""
    activation, kind = GROUPS[index]
    t, other = kind.table, models if kind is Kind.BASE else base_models
    columns: list[ColumnElement[Any]] = [literal_column(str(index)).label("grp")]
    columns += [t.c[n] if n in t.c else cast(null(), other.c[n].type).label(n) for n in _COLUMNS]
    q = select(*columns).where(_visible(kind, include_loading), t.c.activation_status == activation)
    q = q.where(*_filtered(kind, shape))
    if after:
        q = q.where(t.c.model_id > _AFTER)
    # A subquery, so that each group keeps its own ORDER BY and LIMIT inside the UNION (SQLite needs it so).
    return select(q.order_by(t.c.model_id).limit(_LIMIT).subquery())


@functools.cache
def _page_query(start: int, include_loading: bool, keyed: bool, shape: Shape) -> Select:  # type: ignore[type-arg]
    """A page in one round trip: each remaining group's next models (a range scan of its index, at most the page's
    size), the first of them in listing order, and the listing's total alongside."""
    groups = union_all(
        *(_group_query(i, include_loading, keyed and i == start, shape) for i in range(start, len(GROUPS)))
    )
    u = groups.subquery()
    total = _count_query(include_loading, shape).scalar_subquery().label("total")
    return select(u, total).order_by(u.c.grp, u.c.model_id).limit(_LIMIT)


@functools.cache
def _activation_of(kind: Kind, include_loading: bool) -> Select:  # type: ignore[type-arg]
    t = kind.table
    return select(t.c.activation_status).where(_visible(kind, include_loading), t.c.model_id == _AFTER).limit(1)


async def group_of(conn: Conn, scope: ListScope, model_id: str) -> int | None:
    """Index in GROUPS of the visible model `model_id`, or None when the caller cannot see it."""
    for kind in (Kind.BASE, Kind.FINE_TUNED):
        q = _activation_of(kind, scope.include_loading)
        activation = await driver.value(conn, q, _params(scope, after=model_id))
        if activation is not None:
            return GROUPS.index((Activation.ACTIVE if activation == Activation.ACTIVE else Activation.INACTIVE, kind))
    return None


async def page(conn: Conn, scope: ListScope, limit: int, after: tuple[int, str] | None) -> Page:
    """Up to `limit` models after `after` (group index, id), whether another model follows, and how many models the
    listing holds across all pages."""
    want = limit + 1  # one more than the page tells exactly whether there is a next page
    start = after[0] if after else 0
    q = _page_query(start, scope.include_loading, after is not None, scope.filters.shape)
    rows = await driver.rows(conn, q, _params(scope, limit=want, after=after[1] if after else ""))
    if not rows:
        return Page([], False, await count(conn, scope))
    records = [to_record(GROUPS[r[0]][1], r[1:-1], _COLUMNS) for r in rows[:limit]]
    return Page(records, len(rows) > limit, int(rows[0][-1]))


@functools.cache
def _count_query(include_loading: bool, shape: Shape = (False, False, False)) -> Select:  # type: ignore[type-arg]
    if any(shape):
        # Filtered: counted over the visible rows that match (the kept counters know no metadata). A scan of the
        # tenant's models, which only filtered listings pay.
        per_kind = [
            select(func.count()).where(_visible(kind, include_loading), *_filtered(kind, shape)).scalar_subquery()
            for kind in (Kind.BASE, Kind.FINE_TUNED)
        ]
        return select(per_kind[0] + per_kind[1])
    c = model_counts
    total = func.coalesce(func.sum(c.c.n), 0)
    loaded_only = [] if include_loading else [c.c.loaded == 1]
    base = select(total).where(
        c.c.tenant_id == _TENANT, c.c.kind == 0, c.c.project_id.in_(("", _PROJECT)), *loaded_only
    )
    fine_tuned = select(total).where(
        c.c.tenant_id == _TENANT, c.c.kind == 1, c.c.project_id == _PROJECT, c.c.published == 1, *loaded_only
    )
    own, glob = base_models, base_models.alias("glob")
    on = and_(glob.c.tenant_id == own.c.tenant_id, glob.c.model_id == own.c.model_id, glob.c.project_id == "")
    shadowed = select(func.count()).select_from(own.join(glob, on))
    shadowed = shadowed.where(own.c.tenant_id == _TENANT, own.c.project_id == _PROJECT)
    if not include_loading:
        shadowed = shadowed.where(is_loaded(glob.c.loading_status))
    return select(base.scalar_subquery() + fine_tuned.scalar_subquery() - shadowed.scalar_subquery())


async def count(conn: Conn, scope: ListScope) -> int:
    """How many models the listing holds across all pages: read from the trigger-kept counters, minus the global
    base models the caller's project shadows (a join over that project's own base models only)."""
    return int(await driver.value(conn, _count_query(scope.include_loading, scope.filters.shape), _params(scope)))


_ALL_BASE = (
    select(base_models)
    .where(base_models.c.tenant_id == _TENANT, loaded(Kind.BASE))
    .order_by(base_models.c.model_id, base_models.c.project_id)
)
_ALL_FINE_TUNED = (
    select(models)
    .where(models.c.tenant_id == _TENANT, models.c.is_published.is_(True), loaded(Kind.FINE_TUNED))
    .order_by(models.c.model_id)
)


async def all_loaded(conn: Conn, tenant_id: str) -> list[ModelRecord]:
    """Worker listing: every loaded base model of the tenant, then every loaded, published fine-tuned model."""
    params = {"tenant": tenant_id}
    bases = await driver.rows(conn, _ALL_BASE, params)
    fine_tuned = await driver.rows(conn, _ALL_FINE_TUNED, params)
    return [to_record(Kind.BASE, r) for r in bases] + [to_record(Kind.FINE_TUNED, r) for r in fine_tuned]
