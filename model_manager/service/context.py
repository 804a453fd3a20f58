"""What both services need: the database, the object store and the settings that shape their rules."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from model_manager.config import Config, LimitsConfig, LoadingConfig, ObjectStoreConfig
from model_manager.objectstore.base import ObjectStore
from model_manager.service import namespace
from model_manager.service.cache import MIB, ResponseCache, Scope, Versions
from model_manager.service.changes import CatalogChanges
from model_manager.store.database import Conn, Database
from model_manager.store.registry import get_storage_prefix

M = TypeVar("M")


@dataclass
class ServiceContext:
    db: Database
    objects: ObjectStore
    loading: LoadingConfig = field(default_factory=LoadingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # Used when a tenant has no storage config yet: the server's own objectStore path prefix.
    default_path_prefix: str = ObjectStoreConfig().path_prefix
    base_model_path_prefix: str = ObjectStoreConfig().base_model_path_prefix
    clock: Callable[[], float] = field(default=time.time)
    # With auth on, worker calls may only name projects the tenant's API keys name.
    auth_enabled: bool = False
    platform_bucket: str = ""  # the store's own bucket ("" for a local directory)
    # The loaders' source bucket and its path prefix (loader.downloader.s3), when the server knows it.
    mirror: tuple[str, str] | None = None
    cache: ResponseCache | None = None  # None: every read goes to the database
    allowed_registries: tuple[str, ...] = ()  # oci.allowedRegistries: the registries requests may name (): any
    versions: Versions = field(init=False)  # what cached answers are valid under
    changes: CatalogChanges = field(init=False)  # what watchers wait on

    def __post_init__(self) -> None:
        self.versions = Versions(self.db)
        self.changes = CatalogChanges(self.versions.changes)

    @classmethod
    def from_config(cls, config: Config, db: Database, objects: ObjectStore) -> ServiceContext:
        store = config.object_store
        return cls(
            db,
            objects,
            config.loading,
            config.limits,
            store.path_prefix,
            store.base_model_path_prefix,
            auth_enabled=config.auth.enable,
            platform_bucket=store.s3.bucket if store.s3 is not None else "",
            mirror=_mirror(config),
            cache=ResponseCache(config.cache.max_mib * MIB) if config.cache.enable else None,
            allowed_registries=config.oci.allowed_registries,
        )

    async def answer(
        self, key: Hashable, scope: Scope, build: Callable[[Conn], Awaitable[M]], encode: Callable[[M], bytes]
    ) -> bytes:
        """The encoded answer for `key`, which depends on `scope` only: from the cache while the scope's version
        stands, else built (the version read first, the data after) and kept."""

        async def built() -> bytes:
            async with self.db.reading() as conn:
                return encode(await build(conn))

        if self.cache is None:
            return await built()
        return await self.cache.answer(key, await self.versions.of(scope), built)

    @property
    def lease_seconds(self) -> float:
        return self.loading.lease_seconds

    @property
    def max_attempts(self) -> int:
        return self.loading.max_attempts

    def now(self) -> int:
        """The service's clock in whole seconds, as rows record times."""
        return int(self.clock())

    async def path_prefix(self, conn: Conn, tenant_id: str) -> str:
        """The tenant's storage prefix: the one its worker recorded, else the server's own placed in its area."""
        recorded = await get_storage_prefix(conn, tenant_id)
        return recorded or namespace.assign_prefix(tenant_id, self.default_path_prefix)

    async def base_model_root(self, conn: Conn, tenant_id: str) -> str:
        """Where the tenant's loaders put base models."""
        return f"{await self.path_prefix(conn, tenant_id)}/{self.base_model_path_prefix}"


def _mirror(config: Config) -> tuple[str, str] | None:
    source = config.loader.downloader.s3
    return (source.bucket, source.path_prefix.strip("/")) if source is not None and source.bucket else None
