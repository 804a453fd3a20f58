"""What both services need: the database, the object store and a few settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from model_manager.objectstore.base import ObjectStore
from model_manager.store.database import Conn, Database
from model_manager.store.registry import get_storage_prefix


@dataclass
class ServiceContext:
    db: Database
    objects: ObjectStore
    # Used when a tenant has no storage config yet: the server's own objectStore path prefix.
    default_path_prefix: str = "models"
    lease_seconds: float = 120.0
    max_attempts: int = 3
    clock: Callable[[], float] = field(default=time.time)

    async def path_prefix(self, conn: Conn, tenant_id: str) -> str:
        return await get_storage_prefix(conn, tenant_id) or self.default_path_prefix
