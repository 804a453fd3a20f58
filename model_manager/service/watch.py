"""WatchModel: a model's state, sent at once and again each time it changes, until its load ends.

Each event is the model as GetModel (include_loading_model) answers it, encoded by the front that streams it. The
state lives in the database (status, message and progress numbers on the model row), so a watcher sees what any
loader reported to any replica, and a restarted server picks up where the last one was.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable

from model_manager import ids
from model_manager.errors import InvalidArgument, NotFound
from model_manager.identity import Identity, Role
from model_manager.proto.llmariner.models.server.v1 import WatchModelRequest
from model_manager.service import access, validate
from model_manager.service.context import ServiceContext
from model_manager.service.lookup import find_visible
from model_manager.store.records import LoadingStatus, ModelRecord

# Sent again when nothing changed for this long: proxies and load balancers close connections that stay silent.
HEARTBEAT_SECONDS = 15.0


def check(who: Identity, req: WatchModelRequest) -> None:
    access.require(who, Role.READER, "watching models")
    validate.check_id(req.id)
    if req.timeout_seconds < 0:
        raise InvalidArgument(f"timeout_seconds must not be negative, got {req.timeout_seconds}")


async def watch(
    ctx: ServiceContext, who: Identity, req: WatchModelRequest, encode: Callable[[ModelRecord], bytes]
) -> AsyncGenerator[bytes, None]:
    """The encoded events. Errors before the first event (a bad id, an unknown model) come before anything is
    sent; a model deleted while watched ends the stream with NotFound."""
    check(who, req)
    clock = asyncio.get_running_loop().time
    deadline = clock() + req.timeout_seconds if req.timeout_seconds else math.inf
    model_id = req.id
    last: bytes | None = None
    beat = 0.0
    while True:
        # The version first and the row after: a write after this read moves the version past `version`.
        version = await ctx.catalog_version()
        rec, model_id = await _read(ctx, who, model_id)
        event = encode(rec)
        if event != last or clock() >= beat:
            yield event
            last, beat = event, clock() + HEARTBEAT_SECONDS
        if rec.loading_status == LoadingStatus.FAILED or rec.is_loaded:
            return
        if clock() >= deadline:
            return
        await ctx.changes.after(version, min(beat, deadline) - clock())


async def _read(ctx: ServiceContext, who: Identity, model_id: str) -> tuple[ModelRecord, str]:
    """The model, following a Hugging Face id ("org/name") to the id it is loaded as ("org-name"): on success
    the requested row gives way to the loaded one."""
    async with ctx.db.reading() as conn:
        try:
            return await find_visible(conn, who, model_id, True, who.project_id), model_id
        except NotFound:
            loaded_as = ids.converted(model_id)
            if loaded_as == model_id:
                raise
            try:
                return await find_visible(conn, who, loaded_as, True, who.project_id), loaded_as
            except NotFound:
                raise NotFound(f'model "{model_id}" not found') from None
