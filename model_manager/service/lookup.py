"""Which model an id names for a caller: the one lookup GetModel, the updates, WatchModel and the worker share."""

from __future__ import annotations

from model_manager.core.errors import NotFound
from model_manager.core.identity import Identity
from model_manager.store import catalog
from model_manager.store.database import Conn
from model_manager.store.records import ModelRecord


async def find_visible(
    conn: Conn, who: Identity, model_id: str, include_loading: bool, project_id: str | None
) -> ModelRecord:
    """A base model first, then a published fine-tuned model of the tenant; both as `project_id` sees them (None:
    any project of the tenant, as the worker API sees them)."""
    rec = await catalog.find_base(conn, who.tenant_id, model_id, project_id)
    if rec is None:
        rec = await catalog.find_fine_tuned(conn, who.tenant_id, model_id, project_id=project_id)
    if rec is None or not (rec.is_loaded or include_loading):
        raise NotFound(f'model "{model_id}" not found')
    return rec
