"""Encoded answers of the read paths (a model, a listing page), reused while the catalogue version stands.

Every write to a model table bumps the version in the database, in its own transaction (migration 0006), so a
server that reads the version sees a committed write at once, whatever replica made it. A request reads the
version first and the data after: an answer is never stored under a version older than the data it holds, so a
reader that sees version V never gets an answer from before V. One small read, shared by the requests that
arrive together, replaces the page's queries, the record and message building and the encoding.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from model_manager.store import catalog
from model_manager.store.database import Conn
from model_manager.store.listing import Page
from model_manager.store.records import ModelRecord

if TYPE_CHECKING:
    from model_manager.service.context import ServiceContext

MIB = 1024 * 1024
M = TypeVar("M")


class ResponseCache:
    def __init__(self, max_bytes: int = 64 * MIB, max_entries: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.version = -1
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.flights: dict[Hashable, asyncio.Task[bytes]] = {}  # builds under way, by (version, key)

    def _adopt(self, version: int) -> bool:
        """Move to `version` when it is newer (dropping every older answer); False for an older one, which a
        request that read the version before another saw a write may still hold."""
        if version > self.version:
            self.version = version
            self._entries.clear()
            self._bytes = 0
        return version == self.version

    def get(self, version: int, key: Hashable) -> bytes | None:
        value = self._entries.get(key) if self._adopt(version) else None
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, version: int, key: Hashable, value: bytes) -> None:
        if not self._adopt(version) or len(value) > self.max_bytes // 4:
            return
        old = self._entries.pop(key, None)
        self._bytes -= len(old) if old is not None else 0
        self._entries[key] = value
        self._bytes += len(value)
        while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, dropped = self._entries.popitem(last=False)  # least recently used
            self._bytes -= len(dropped)


@dataclass(frozen=True)
class Encoding:
    """How a front writes the read paths' answers (JSON for REST, protobuf for gRPC) straight from the records;
    the name keeps the two apart in the cache."""

    name: str
    model: Callable[[ModelRecord], bytes]
    page: Callable[[Page], bytes]


async def read_version(ctx: ServiceContext) -> int:
    async with ctx.db.reading() as conn:
        return await catalog.version(conn)


async def cached(
    ctx: ServiceContext,
    key: Hashable,
    build: Callable[[Conn], Awaitable[M]],
    encode: Callable[[M], bytes],
    version: int | None = None,
) -> bytes:
    """The encoded answer for `key`: from the cache when the catalogue version has not moved since it was built,
    else built (version read first, data after) and kept.

    The version comes from a read shared by the requests that arrive together (`ServiceContext.catalog_version`):
    a hit takes no connection of its own, and still sees every write acknowledged before the request came. A
    caller that read a version itself, just before, may pass it. Callers that miss together share one build: after
    a change, a crowd asking for the same answer (the watchers of one model) costs one query, not one each."""
    cache = ctx.cache
    if cache is None:
        return await _build(ctx, build, encode)
    if version is None:
        version = await ctx.catalog_version()
    hit = cache.get(version, key)
    if hit is not None:
        return hit
    flight = (version, key)
    task = cache.flights.get(flight)
    if task is None:
        task = asyncio.create_task(_build(ctx, build, encode))
        cache.flights[flight] = task
        task.add_done_callback(functools.partial(_landed, cache, flight))
    # Shielded: a caller that gives up (a cancelled request) must not cancel the build others wait for.
    value = await asyncio.shield(task)
    cache.put(version, key, value)
    return value


async def _build(ctx: ServiceContext, build: Callable[[Conn], Awaitable[M]], encode: Callable[[M], bytes]) -> bytes:
    async with ctx.db.reading() as conn:
        return encode(await build(conn))


def _landed(cache: ResponseCache, flight: Hashable, task: asyncio.Task[bytes]) -> None:
    cache.flights.pop(flight, None)
    if not task.cancelled():
        task.exception()  # retrieved: a build whose callers all gave up must not be logged as unhandled
