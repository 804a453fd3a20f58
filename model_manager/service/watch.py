"""WatchModel: a model's state, sent at once and again each time it changes, until its load ends.

Each event is the model as GetModel (include_loading_model) answers it, encoded by the front that streams it. The
state lives in the database (status, message and progress numbers on the model row), so a watcher sees what any
loader reported to any replica, and a restarted server picks up where the last one was.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument, NotFound
from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server.v1 import WatchModelRequest
from model_manager.service import access, validate
from model_manager.service.cache import Encoding, ModelScope
from model_manager.service.context import ServiceContext
from model_manager.service.lookup import find_visible, resolve, with_aliases
from model_manager.store.database import Conn
from model_manager.store.records import LoadingStatus, ModelRecord

# Sent again when nothing changed for this long: proxies and load balancers close connections that stay silent.
HEARTBEAT_SECONDS = 15.0


def check(who: Identity, req: WatchModelRequest) -> None:
    access.require(who, Role.READER, "watching models")
    validate.check_id(req.id)
    if req.timeout_seconds < 0:
        raise InvalidArgument(f"timeout_seconds must not be negative, got {req.timeout_seconds}")


async def watch(
    ctx: ServiceContext, who: Identity, req: WatchModelRequest, encoding: Encoding
) -> AsyncGenerator[bytes, None]:
    """The encoded events. Errors before the first event (a bad id, an unknown model) come before anything is
    sent; a model deleted while watched ends the stream with NotFound."""
    check(who, req)
    clock = asyncio.get_running_loop().time
    deadline = clock() + req.timeout_seconds if req.timeout_seconds else math.inf
    model_id = req.id
    last: bytes | None = None
    beat = 0.0
    seen = await ctx.versions.changes()
    while True:
        # The count of writes first and the row after: a write after the count was read moves it past `seen`.
        event, model_id, ended = await _read(ctx, who, model_id, encoding)
        if event != last or clock() >= beat:
            yield event
            last, beat = event, clock() + HEARTBEAT_SECONDS
        if ended:
            return
        if clock() >= deadline:
            return
        # The poll's count was read before the row will be; none (a heartbeat is due) means reading it now.
        newer = await ctx.changes.after(seen, min(beat, deadline) - clock())
        seen = newer if newer is not None else await ctx.versions.changes()


async def _read(ctx: ServiceContext, who: Identity, model_id: str, encoding: Encoding) -> tuple[bytes, str, bool]:
    """The encoded model, the id it was found under, and whether its load has ended.

    A Hugging Face id ("org/name") is followed to the id it is loaded as ("org-name"): on success the requested row
    gives way to the loaded one."""
    try:
        event, ended = await _get(ctx, who, model_id, encoding)
        return event, model_id, ended
    except NotFound:
        pass
    loaded_as = ids.converted(model_id)
    if loaded_as != model_id:
        with contextlib.suppress(NotFound):
            event, ended = await _get(ctx, who, loaded_as, encoding)
            return event, loaded_as, ended
    # An alias: the watch follows the model it names now (answered and cached under that model's own id).
    async with ctx.db.reading() as conn:
        target = await resolve(conn, who, model_id, who.project_id)
    if target is None:
        raise NotFound(f'model "{model_id}" not found')
    event, ended = await _get(ctx, who, target, encoding)
    return event, target, ended


async def _get(ctx: ServiceContext, who: Identity, model_id: str, encoding: Encoding) -> tuple[bytes, bool]:
    """Through the response cache: the watchers of one model that a change wakes together share one read and one
    encoding. The cached value is the event behind one byte saying whether the load has ended."""

    async def build(conn: Conn) -> ModelRecord:
        rec = await find_visible(conn, who, model_id, True, who.project_id, follow_aliases=False)
        return (await with_aliases(conn, who.tenant_id, [rec], who.project_id))[0]

    def encode(rec: ModelRecord) -> bytes:
        ended = rec.loading_status == LoadingStatus.FAILED or rec.is_loaded
        return (_ENDED if ended else _GOING) + encoding.model(rec)

    key = ("watch", encoding.name, who.tenant_id, who.project_id, model_id)
    value = await ctx.answer(key, ModelScope(who.tenant_id, model_id), build, encode)
    return value[1:], value[:1] == _ENDED


_ENDED, _GOING = b"E", b"L"
