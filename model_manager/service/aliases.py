"""Aliases: stable names for models that clients use instead of model ids, re-pointed in one atomic change.

Rules:
- one namespace per tenant, and never a model id: an alias is refused when a model of the tenant has that id, and
  a model is refused when an alias has its id (409 either way round);
- scoped like models: an alias of the caller's project (writers, `is_project_scoped`) or of the whole tenant
  (admins), seen by the callers that would see such a model;
- the model named must exist and be visible to the caller (404); a model that an alias names cannot be deleted;
- a re-point is one row update in one transaction: a reader resolves the alias to the old model or the new one,
  never to neither (resolution reads the alias row, uncached; see `lookup.find_visible`).
"""

from __future__ import annotations

import re

from model_manager.core.errors import AlreadyExists, InvalidArgument, NotFound
from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server.v1 import (
    Alias,
    AliasChange,
    DeleteAliasRequest,
    DeleteAliasResponse,
    GetAliasRequest,
    ListAliasesRequest,
    ListAliasesResponse,
    SetAliasRequest,
)
from model_manager.service import access, validate
from model_manager.service.context import ServiceContext
from model_manager.service.lookup import find_visible
from model_manager.store import aliases
from model_manager.store.aliases import AliasRow, Change
from model_manager.store.database import Conn

MAX_NAME = 256
# Letters, digits, ".", "_", "-": no "/" or ":" (a model id's separators, and the REST path's action separator).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name: str) -> str:
    if not name:
        raise InvalidArgument("name is required")
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"name {name[:80]!r} is not an alias name: letters, digits, '.', '_' and '-', starting with a letter "
            f"or digit, at most {MAX_NAME} characters"
        )
    return name


def _message(row: AliasRow, changes: list[Change] | None = None) -> Alias:
    return Alias(
        name=row.name,
        model_id=row.model_id,
        project_id=row.project_id,
        created=row.created_at,
        updated=row.updated_at,
        history=[
            AliasChange(
                from_model_id=c.from_model_id,
                to_model_id=c.to_model_id,
                changed_at=c.changed_at,
                changed_by=c.changed_by,
            )
            for c in changes or []
        ],
    )


class AliasService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def set_alias(self, who: Identity, req: SetAliasRequest) -> Alias:
        access.require(who, Role.WRITER, "setting aliases")
        name = check_name(req.name)
        model_id = validate.check_id(req.model_id, "model_id")
        async with self.ctx.db.transaction() as conn:
            current = await aliases.find(conn, who.tenant_id, name, for_update=True)
            if current is None:
                if not req.is_project_scoped:
                    access.require(who, Role.ADMIN, "setting an alias of the whole tenant (not scoped to a project)")
                if await aliases.model_id_exists(conn, who.tenant_id, name):
                    raise AlreadyExists(f'alias "{name}" would have the id of a model; an alias names a model')
                project_id = who.project_id if req.is_project_scoped else ""
            else:
                self._may_change(who, current, "re-pointing")
                project_id = current.project_id
            target = await find_visible(conn, who, model_id, True, who.project_id, follow_aliases=False)
            await aliases.put(conn, who.tenant_id, project_id, name, target.model_id, self.ctx.now(), who.key_id)
            return await self._with_history(conn, who, name)

    async def get_alias(self, who: Identity, req: GetAliasRequest) -> Alias:
        access.require(who, Role.READER, "reading aliases")
        name = check_name(req.name)
        async with self.ctx.db.reading() as conn:
            return await self._with_history(conn, who, name)

    async def list_aliases(self, who: Identity, req: ListAliasesRequest) -> ListAliasesResponse:
        access.require(who, Role.READER, "listing aliases")
        async with self.ctx.db.reading() as conn:
            rows = await aliases.visible(conn, who.tenant_id, who.project_id)
        return ListAliasesResponse(object="list", data=[_message(r) for r in rows])

    async def delete_alias(self, who: Identity, req: DeleteAliasRequest) -> DeleteAliasResponse:
        access.require(who, Role.WRITER, "deleting aliases")
        name = check_name(req.name)
        async with self.ctx.db.transaction() as conn:
            current = await self._visible(conn, who, name)
            self._may_change(who, current, "deleting")
            await aliases.remove(conn, who.tenant_id, name)
        return DeleteAliasResponse(name=name, deleted=True)

    async def _visible(self, conn: Conn, who: Identity, name: str) -> AliasRow:
        row = await aliases.find(conn, who.tenant_id, name)
        if row is None or row.project_id not in ("", who.project_id):
            raise NotFound(f'alias "{name}" not found')
        return row

    async def _with_history(self, conn: Conn, who: Identity, name: str) -> Alias:
        row = await self._visible(conn, who, name)
        return _message(row, await aliases.history(conn, who.tenant_id, name))

    @staticmethod
    def _may_change(who: Identity, row: AliasRow, verb: str) -> None:
        if row.project_id == "":
            access.require(who, Role.ADMIN, f"{verb} an alias of the whole tenant")
        elif row.project_id != who.project_id:
            # Another project's alias holds the name (names are one namespace per tenant).
            raise AlreadyExists(f'alias "{row.name}" already exists in another project')
