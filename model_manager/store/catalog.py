"""Reads and writes of single models in both tables."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from model_manager.core import files, ids
from model_manager.core.errors import AlreadyExists, FailedPrecondition, NotFound
from model_manager.store import driver
from model_manager.store.database import Conn
from model_manager.store.records import (
    LOADED_STATUSES,
    Activation,
    Kind,
    LoadingStatus,
    ModelColumns,
    ModelRecord,
    to_record,
)
from model_manager.store.tables import base_models, hf_model_repos, models


def now_seconds() -> int:
    return int(time.time())


_SHADOW = base_models.alias("shadow")  # built once: aliasing a table on every call showed in listing profiles


def project_visibility(tenant_id: ColumnElement[str], project_id: ColumnElement[str]) -> ColumnElement[bool]:
    """A project's own base models, and the tenant's global ones that it does not shadow with a model of the
    same id. Takes SQL expressions so listings can build it once with bound parameters."""
    t, shadow = base_models, _SHADOW
    shadowed = (
        select(literal(1))
        .where(shadow.c.tenant_id == tenant_id, shadow.c.model_id == t.c.model_id, shadow.c.project_id == project_id)
        .exists()
    )
    return and_(t.c.tenant_id == tenant_id, or_(t.c.project_id == project_id, and_(t.c.project_id == "", ~shadowed)))


def is_loaded(status: ColumnElement[int]) -> ColumnElement[bool]:
    # Literal values, not an expanding parameter: the statement's text stays fixed (store/driver.py).
    return status.in_([literal_column(str(int(s))) for s in LOADED_STATUSES])


def loaded(kind: Kind) -> ColumnElement[bool]:
    return is_loaded(kind.table.c.loading_status)


_FIND_BASE = select(base_models).where(
    base_models.c.tenant_id == bindparam("tenant"), base_models.c.model_id == bindparam("model_id")
)


async def find_base(
    conn: Conn, tenant_id: str, model_id: str, project_id: str | None, *, loaded_only: bool = False
) -> ModelRecord | None:
    """The base model `model_id` as `project_id` sees it (None: any project; "": global only).

    All rows of one id are few (the global one and project-scoped ones), so they are read by key and the
    project's own row is preferred here rather than in SQL.
    """
    rows = await driver.rows(conn, _FIND_BASE, {"tenant": tenant_id, "model_id": model_id})
    found = [to_record(Kind.BASE, r) for r in rows]
    found = [r for r in found if (project_id is None or r.project_id in ("", project_id))]
    if loaded_only:
        found = [r for r in found if r.is_loaded]
    return max(found, key=lambda r: r.project_id, default=None)  # "" sorts first: a project's own row wins


@functools.cache
def _find_fine_tuned(published_only: bool, by_project: bool) -> Select:  # type: ignore[type-arg]
    t = models
    q = select(t).where(t.c.tenant_id == bindparam("tenant"), t.c.model_id == bindparam("model_id"))
    if published_only:
        q = q.where(t.c.is_published.is_(True))
    if by_project:
        q = q.where(t.c.project_id == bindparam("project"))
    return q


async def find_fine_tuned(
    conn: Conn, tenant_id: str, model_id: str, *, published_only: bool = True, project_id: str | None = None
) -> ModelRecord | None:
    q = _find_fine_tuned(published_only, project_id is not None)
    params = {"tenant": tenant_id, "model_id": model_id, "project": project_id}
    rows = await driver.rows(conn, q, params)
    return to_record(Kind.FINE_TUNED, rows[0]) if rows else None


async def base_id_taken(conn: Conn, tenant_id: str, model_ids: Sequence[str], project_id: str | None) -> str | None:
    """The first of `model_ids` that clashes with a base model visible in the same scope, if any.

    A global id clashes with any row of the tenant; a project-scoped id with the global rows and its project's.
    """
    t = base_models
    # A requested Hugging Face id "x/y" is loaded as "x-y": compare the converted forms as well.
    converted = func.replace(t.c.model_id, "/", "-")
    # A model requested with a GGUF conversion also holds the id its GGUF will be registered under.
    gguf = case((t.c.convert_gguf != "", converted + "-" + t.c.convert_gguf), else_="")
    wanted = list(model_ids)
    q = select(t.c.model_id, converted, gguf).where(
        t.c.tenant_id == tenant_id, or_(t.c.model_id.in_(wanted), converted.in_(wanted), gguf.in_(wanted))
    )
    if project_id:
        q = q.where(t.c.project_id.in_(("", project_id)))
    rows = (await conn.execute(q)).all()
    return next((row[0] for m in model_ids for row in rows if m in row), None)


async def storage_clash(conn: Conn, tenant_id: str, model_id: str, directory: str, root: str) -> ModelRecord | None:
    """A base model whose files would share or nest with `directory` (where `model_id` would be stored, relative
    to the tenant's base-model root `root`): the same directory under another id, a directory that holds it, or one
    inside it. The tenant's requested models are compared by their id's directory (they will be stored under the
    same root); loaded ones of any tenant by their path (rows older than tenant areas may lie under any root)."""
    t = base_models
    requested_dir = func.replace(t.c.model_id, ":", "-")
    parts = directory.split("/")
    ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
    requested = or_(
        and_(requested_dir == directory, t.c.model_id != model_id),
        requested_dir.in_(ancestors),
        requested_dir.startswith(directory + "/", autoescape=True),
    )
    q = (
        select(t)
        .where(
            or_(
                and_(t.c.tenant_id == tenant_id, requested),
                and_(t.c.path == f"{root}/{directory}", t.c.model_id != ids.converted(model_id)),
                t.c.path.in_([f"{root}/{a}" for a in ancestors]),
                t.c.path.startswith(f"{root}/{directory}/", autoescape=True),
            )
        )
        .limit(1)
    )
    row = (await conn.execute(q)).first()
    return to_record(Kind.BASE, row) if row else None


async def insert_model(conn: Conn, kind: Kind, values: ModelColumns, now: int) -> ModelRecord:
    """Insert a model row at `now` (the service's clock, in seconds)."""
    row = {"created_at": now, "updated_at": now, "activation_status": Activation.INACTIVE, **values}
    try:
        result = await conn.execute(insert(kind.table).values(**row).returning(*kind.table.c))
    except IntegrityError as e:
        raise AlreadyExists(f'model "{values["model_id"]}" already exists') from e
    return to_record(kind, result.one())


def _same_row(rec: ModelRecord) -> ColumnElement[bool]:
    t = rec.kind.table
    return and_(t.c.tenant_id == rec.tenant_id, t.c.model_id == rec.model_id, t.c.project_id == rec.project_id)


async def update_model(conn: Conn, rec: ModelRecord, values: ModelColumns, now: int) -> ModelRecord:
    """Update the row `rec` was read from; NotFound when a concurrent delete removed it in between."""
    t = rec.kind.table
    q = update(t).where(_same_row(rec)).values(updated_at=now, **values).returning(*t.c)
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f'model "{rec.model_id}" not found')
    return to_record(rec.kind, row)


async def delete_inactive_model(conn: Conn, rec: ModelRecord) -> None:
    """Delete the row `rec` was read from if it is still inactive: a compare-and-set, so an activation that commits
    between the caller's read and this delete wins (FailedPrecondition) and a concurrent delete is NotFound."""
    t = rec.kind.table
    gone = await conn.execute(delete(t).where(_same_row(rec), t.c.activation_status == Activation.INACTIVE))
    if gone.rowcount == 0:
        still = (await conn.execute(select(t.c.activation_status).where(_same_row(rec)))).first()
        if still is None:
            raise NotFound(f'model "{rec.model_id}" not found')
        raise FailedPrecondition(f'model "{rec.model_id}" is active')
    await _drop_repo_record(conn, rec)


async def delete_model(conn: Conn, rec: ModelRecord) -> None:
    t = rec.kind.table
    await conn.execute(delete(t).where(_same_row(rec)))
    await _drop_repo_record(conn, rec)


async def delete_registered_by(conn: Conn, rec: ModelRecord) -> list[ModelRecord]:
    """Delete the base models the still unfinished load of `rec` registered; return them (their files go too)."""
    if rec.kind is not Kind.BASE:
        return []
    t = base_models
    q = delete(t).where(t.c.tenant_id == rec.tenant_id, t.c.loaded_by == rec.id).returning(*t.c)
    return [to_record(Kind.BASE, row) for row in (await conn.execute(q)).all()]


async def release_registered_by(conn: Conn, rec: ModelRecord) -> None:
    """The load of `rec` completed: what it registered stands on its own now."""
    t = base_models
    await conn.execute(update(t).where(t.c.tenant_id == rec.tenant_id, t.c.loaded_by == rec.id).values(loaded_by=None))


async def _drop_repo_record(conn: Conn, rec: ModelRecord) -> None:
    if rec.kind is Kind.BASE:
        # The repo record named "org/name" produced this model ("org-name", or "org-name-<file>" for a repo
        # of several GGUF files); drop it so the repo can be loaded again.
        h = hf_model_repos
        converted = func.replace(h.c.name, "/", "-")
        await conn.execute(
            delete(h).where(
                h.c.tenant_id == rec.tenant_id,
                h.c.project_id == rec.project_id,
                or_(converted == rec.model_id, literal(rec.model_id).like(converted + "-%")),
            )
        )


async def paths_at_or_under(conn: Conn, path: str) -> set[str]:
    """The paths (directories or GGUF files) of models of any tenant that are `path` itself or lie under `path/`:
    files there belong to those models, not to one being deleted at `path`. A load under way (or failed, to be
    retried) holds the directory it writes to."""
    found: set[str] = set()
    for col in (base_models.c.path, base_models.c.gguf_model_path, base_models.c.content_path, models.c.path):
        q = select(col).where(or_(col == path, col.startswith(path + "/", autoescape=True))).distinct()
        found.update((await conn.execute(q)).scalars())
    return found


class Overlap(NamedTuple):
    tenant_id: str
    project_id: str
    model_id: str
    kind: Kind


async def models_overlapping(conn: Conn, path: str) -> list[Overlap]:
    """Every model whose files (directory, GGUF file, or the directory its load writes to) are at `path`, inside it
    or hold it: the models a worker naming `path` would share files with, or a load reading `path` would copy."""
    parts = path.split("/")
    ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
    found: list[Overlap] = []
    for kind, col in (
        (Kind.BASE, base_models.c.path),
        (Kind.BASE, base_models.c.gguf_model_path),
        (Kind.BASE, base_models.c.content_path),
        (Kind.FINE_TUNED, models.c.path),
    ):
        t = kind.table
        q = select(t.c.tenant_id, t.c.project_id, t.c.model_id).where(
            or_(col == path, col.startswith(path + "/", autoescape=True), col.in_(ancestors))
        )
        found.extend(Overlap(tenant, project, model_id, kind) for tenant, project, model_id in await conn.execute(q))
    return found


async def count_by_status(conn: Conn) -> dict[tuple[Kind, int], int]:
    """How many models of each kind are in each loading status, over every tenant (for the metrics)."""
    found: dict[tuple[Kind, int], int] = {}
    for kind in (Kind.BASE, Kind.FINE_TUNED):
        t = kind.table
        q = select(t.c.loading_status, func.count()).group_by(t.c.loading_status)
        for status, n in (await conn.execute(q)).all():
            found[(kind, int(status))] = int(n)
    return found


async def tenant_bytes(conn: Conn, tenant_id: str) -> int:
    """What the tenant's models take (or will take) in the store: the stored files of loaded models, the size the
    source reported for the others. Files that several models share (one content, several projects or names) count
    once. One pass over the tenant's rows; only quota checks ask."""
    total = 0
    seen: set[str] = set()
    for t in (base_models, models):
        q = select(t.c.files, t.c.progress_bytes_total, t.c.path).where(t.c.tenant_id == tenant_id)
        for stored, expected, path in (await conn.execute(q)).all():
            if stored == "[]":
                total += expected
            elif path not in seen:
                seen.add(path)
                total += sum(f.size for f in files.decode(stored))
    return total


async def stored_content(conn: Conn, tenant_id: str, key: str) -> list[ModelRecord]:
    """The tenant's loaded base models whose files are the content `key`, one per distinct (path, GGUF file)."""
    t = base_models
    q = (
        select(t)
        .where(t.c.tenant_id == tenant_id, t.c.content_key == key, t.c.loading_status == LoadingStatus.SUCCEEDED)
        .order_by(t.c.id)
    )
    found: dict[tuple[str, str], ModelRecord] = {}
    for row in (await conn.execute(q)).all():
        rec = to_record(Kind.BASE, row)
        found.setdefault((rec.path, rec.gguf_model_path), rec)
    return list(found.values())
