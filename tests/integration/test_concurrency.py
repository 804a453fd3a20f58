"""The claim is exact under concurrency on real PostgreSQL (and on SQLite)."""

from __future__ import annotations

import asyncio
import collections

from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.store import catalog
from model_manager.store.records import Kind, LoadingStatus
from tests.helpers import WHO, Api

MODELS = 200
ACQUIRERS = 8


async def test_concurrent_acquirers_each_model_claimed_exactly_once(api: Api) -> None:
    async with api.ctx.db.transaction() as conn:
        for i in range(MODELS):
            await catalog.insert_model(
                conn,
                Kind.BASE,
                {
                    "tenant_id": WHO.tenant_id,
                    "model_id": f"org/m{i:03d}",
                    "loading_status": LoadingStatus.REQUESTED,
                    "source_repository": 2,
                },
                api.ctx.now(),
            )
    claimed: list[str] = []

    async def acquirer(n: int) -> None:
        while True:
            resp = await api.worker.acquire_unloaded_base_model(
                WHO, pb.AcquireUnloadedBaseModelRequest(holder=f"loader-{n}")
            )
            if not resp.base_model_id:
                return
            claimed.append(resp.base_model_id)

    await asyncio.gather(*(acquirer(n) for n in range(ACQUIRERS)))
    counts = collections.Counter(claimed)
    assert len(counts) == MODELS
    assert max(counts.values()) == 1
