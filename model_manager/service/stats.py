"""The gauges of GET /metrics that describe the catalogue and the database pool, read when scraped."""

from __future__ import annotations

from model_manager.core import metrics
from model_manager.service.context import ServiceContext
from model_manager.store import catalog
from model_manager.store.records import Kind, LoadingStatus

_KIND = {Kind.BASE: "base", Kind.FINE_TUNED: "fine_tuned"}


async def refresh(ctx: ServiceContext) -> None:
    async with ctx.db.reading() as conn:
        counts = await catalog.count_by_status(conn)
    for kind, label in _KIND.items():
        for status in LoadingStatus:
            metrics.MODELS.labels(kind=label, loading_status=status.name.lower()).set(counts.get((kind, status), 0))
    metrics.DB_CONNECTIONS_IN_USE.set(ctx.db.connections_in_use())
