"""The per-tenant storage quota (loading.maxBytesPerTenant): what a tenant's models take may not pass it, whichever
way a model comes (a checked request, an unchecked one, a load from a bucket)."""

from __future__ import annotations

from model_manager.core.errors import ResourceExhausted
from model_manager.core.units import human_bytes
from model_manager.service.context import ServiceContext
from model_manager.store import catalog
from model_manager.store.database import Conn


async def check(ctx: ServiceContext, conn: Conn, tenant_id: str, needed: int, counted: int = 0) -> None:
    """Refuse `needed` more bytes for the tenant if they would take it past its quota; `counted` of them are in its
    total already (what a loading model was expected to take before its loader knew better)."""
    quota = ctx.loading.max_bytes_per_tenant
    if not quota:
        return
    used = await catalog.tenant_bytes(conn, tenant_id) - counted
    if used + needed > quota:
        raise ResourceExhausted(
            f"the model needs {human_bytes(needed)} and the tenant's models take {human_bytes(used)} of its "
            f"{human_bytes(quota)} quota (loading.maxBytesPerTenant): delete models or raise the quota"
        )
