"""Which model an id names for a caller: the one lookup GetModel, the updates, WatchModel and the worker share.

An id that names no model may be an alias: the model it names is the answer (aliases are never model ids, so an
id means one or the other)."""

from __future__ import annotations

from dataclasses import replace

from model_manager.core.errors import NotFound
from model_manager.core.identity import Identity
from model_manager.store import aliases, catalog
from model_manager.store.database import Conn
from model_manager.store.records import ModelRecord


async def find_visible(
    conn: Conn,
    who: Identity,
    model_id: str,
    include_loading: bool,
    project_id: str | None,
    follow_aliases: bool = True,
) -> ModelRecord:
    """A base model first, then a published fine-tuned model of the tenant; both as `project_id` sees them (None:
    any project of the tenant, as the worker API sees them). With `follow_aliases`, an alias `project_id` sees
    names the model."""
    rec = await _model(conn, who, model_id, project_id)
    if rec is None and follow_aliases:
        target = await resolve(conn, who, model_id, project_id)
        if target is not None:
            rec = await _model(conn, who, target, project_id)
    if rec is None or not (rec.is_loaded or include_loading):
        raise NotFound(f'model "{model_id}" not found')
    return rec


async def resolve(conn: Conn, who: Identity, name: str, project_id: str | None) -> str | None:
    """The id of the model the alias `name` names, when it is one `project_id` sees."""
    alias = await aliases.find(conn, who.tenant_id, name)
    if alias is None or (project_id is not None and alias.project_id not in ("", project_id)):
        return None
    return alias.model_id


async def _model(conn: Conn, who: Identity, model_id: str, project_id: str | None) -> ModelRecord | None:
    rec = await catalog.find_base(conn, who.tenant_id, model_id, project_id)
    if rec is None:
        rec = await catalog.find_fine_tuned(conn, who.tenant_id, model_id, project_id=project_id)
    return rec


async def with_aliases(
    conn: Conn, tenant_id: str, records: list[ModelRecord], project_id: str | None
) -> list[ModelRecord]:
    """`records` with the names of the aliases `project_id` sees (None: all) that name them; looked up only for
    the models an alias names (their `aliased` flag), so reads of the others cost nothing more."""
    named = [r.model_id for r in records if r.aliased]
    if not named:
        return records
    names = await aliases.names_for(conn, tenant_id, named, project_id)
    return [replace(r, aliases=tuple(names.get(r.model_id, ()))) if r.aliased else r for r in records]
