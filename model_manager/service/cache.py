"""Encoded answers of the read paths (a model, a listing page), reused while what they depend on stands.

An answer is kept under the version of its scope (migration 0013): a model's answer under the versions of the rows
with its id, which only writes to that model change; a listing page under its tenant's counter (of writes that may
change a listing of loaded models, or of every write when loading models are listed). Writes elsewhere leave it
alone. Versions are read from the database, the scope's first and the data after, so an answer is never kept under
a version older than the data it holds, and a write acknowledged by any replica is seen by the next read on every
replica. The requests that arrive together share one read of all their versions.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from model_manager.core import metrics
from model_manager.core.aio import BatchedRead, SharedRead
from model_manager.store import versions
from model_manager.store.database import Database
from model_manager.store.listing import Page
from model_manager.store.records import ModelRecord

MIB = 1024 * 1024


@dataclass(frozen=True)
class ModelScope:
    """What the answers naming one model id depend on: the rows of that id in the tenant."""

    tenant_id: str
    model_id: str


@dataclass(frozen=True)
class ListScope:
    """What a tenant's listings depend on: its writes that may change what is listed (`loading`: every write)."""

    tenant_id: str
    loading: bool


Scope = ModelScope | ListScope


class Versions:
    """The current version of each scope, read in batches shared by the requests that arrive together."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._models: BatchedRead[versions.ModelKey, versions.Fingerprint] = BatchedRead(self._read_models)
        self._tenants: BatchedRead[str, tuple[int, int]] = BatchedRead(self._read_tenants)
        self.changes: SharedRead[int] = SharedRead(self._read_changes)  # every write so far, for watchers

    async def of(self, scope: Scope) -> Hashable:
        if isinstance(scope, ModelScope):
            return await self._models((scope.tenant_id, scope.model_id))
        loaded, changed = await self._tenants(scope.tenant_id)
        return changed if scope.loading else loaded

    async def _read_models(self, keys: frozenset[versions.ModelKey]) -> dict[versions.ModelKey, versions.Fingerprint]:
        async with self.db.reading() as conn:
            return await versions.model_versions(conn, keys)

    async def _read_tenants(self, tenants: frozenset[str]) -> dict[str, tuple[int, int]]:
        async with self.db.reading() as conn:
            return await versions.tenant_counters(conn, tenants)

    async def _read_changes(self) -> int:
        async with self.db.reading() as conn:
            return await versions.change_count(conn)


class ResponseCache:
    """Encoded answers by key, each with the version it was built under; least recently used go first."""

    def __init__(self, max_bytes: int = 64 * MIB, max_entries: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self._flights: dict[tuple[Hashable, Hashable], asyncio.Task[bytes]] = {}  # builds under way

    def get(self, key: Hashable, version: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            self.misses += 1
            metrics.CACHE_MISSES.inc()
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        metrics.CACHE_HITS.inc()
        return entry[1]

    def put(self, key: Hashable, version: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:
            return
        old = self._entries.pop(key, None)
        self._bytes -= len(old[1]) if old is not None else 0
        self._entries[key] = (version, value)
        self._bytes += len(value)
        while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

    async def answer(self, key: Hashable, version: Hashable, build: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer for `key` at `version`: kept, or built. Callers that miss together share one build: after a
        change, a crowd asking for the same answer (the watchers of one model) costs one query, not one each."""
        hit = self.get(key, version)
        if hit is not None:
            return hit
        flight = (key, version)
        task = self._flights.get(flight)
        if task is None:
            task = asyncio.ensure_future(build())
            self._flights[flight] = task
            task.add_done_callback(functools.partial(self._landed, flight))
        # Shielded: a caller that gives up (a cancelled request) must not cancel the build others wait for.
        value = await asyncio.shield(task)
        self.put(key, version, value)
        return value

    def _landed(self, flight: tuple[Hashable, Hashable], task: asyncio.Task[bytes]) -> None:
        self._flights.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved: a build whose callers all gave up must not be logged as unhandled


@dataclass(frozen=True)
class Encoding:
    """How a front writes the read paths' answers (JSON for REST, protobuf for gRPC) straight from the records;
    the name keeps the two apart in the cache."""

    name: str
    model: Callable[[ModelRecord], bytes]
    page: Callable[[Page], bytes]
