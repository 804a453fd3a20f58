"""Claims: 8 concurrent acquirers on PostgreSQL draining requested models. Ours (one statement, FOR UPDATE SKIP
LOCKED) against upstream llmariner's shape (read the oldest REQUESTED row, then update it by id): claims per
second, and how many models were handed out twice (ours must be 0)."""

from __future__ import annotations

import asyncio
import collections
import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from bench import pgdb
from bench.common import Report, alternate, median, yes
from model_manager.core.identity import DEFAULT_WORKER_IDENTITY
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server.v1 import AcquireUnloadedBaseModelRequest
from model_manager.service.context import ServiceContext
from model_manager.service.worker import WorkerService
from model_manager.store.database import Database
from model_manager.store.records import LoadingStatus
from model_manager.store.tables import base_models

ACQUIRERS = 8


async def _drain(name: str, models: int, ours: bool) -> tuple[float, int]:
    await pgdb.fill(name, models, status=LoadingStatus.REQUESTED)
    db = Database(
        create_async_engine(
            pgdb.async_url(name), pool_size=ACQUIRERS + 2, connect_args={"server_settings": {"jit": "off"}}
        )
    )
    worker = WorkerService(ServiceContext(db=db, objects=LocalStore("/nonexistent")))
    claimed: list[str] = []

    async def upstream_claim() -> str:
        # llmariner's shape: find the oldest requested model, then mark it; two acquirers can pick the same row.
        t = base_models
        async with db.transaction() as conn:
            row = (
                await conn.execute(
                    select(t.c.id, t.c.model_id)
                    .where(t.c.loading_status == LoadingStatus.REQUESTED)
                    .order_by(t.c.created_at)
                    .limit(1)
                )
            ).first()
            if row is None:
                return ""
            await conn.execute(update(t).where(t.c.id == row.id).values(loading_status=LoadingStatus.LOADING))
            return str(row.model_id)

    async def acquirer() -> None:
        while True:
            if ours:
                got = (
                    await worker.acquire_unloaded_base_model(
                        DEFAULT_WORKER_IDENTITY, AcquireUnloadedBaseModelRequest(holder="bench")
                    )
                ).base_model_id
            else:
                got = await upstream_claim()
            if not got:
                return
            claimed.append(got)

    t0 = time.perf_counter()
    await asyncio.gather(*(acquirer() for _ in range(ACQUIRERS)))
    elapsed = time.perf_counter() - t0
    async with db.engine.begin() as conn:
        await conn.execute(base_models.delete())
    await db.close()
    twice = sum(n - 1 for n in collections.Counter(claimed).values() if n > 1)
    return len(claimed) / elapsed, twice


def run(report: Report, models: int = 2_000, rounds: int = 3) -> None:
    name = pgdb.bench_db_name("claims")
    pgdb.run(pgdb.create(name))
    try:
        results = alternate(
            rounds,
            {
                "ours": lambda: asyncio.run(_drain(name, models, True)),
                "upstream": lambda: asyncio.run(_drain(name, models, False)),
            },
        )
    finally:
        pgdb.run(pgdb.drop(name))
    ours_rate = median([r[0] for r in results["ours"]])
    up_rate = median([r[0] for r in results["upstream"]])
    ours_twice = max(r[1] for r in results["ours"])
    up_twice = max(r[1] for r in results["upstream"])
    report.add(
        f"claims, {ACQUIRERS} acquirers, {models:,} models",
        "claims/s",
        f"{ours_rate:.0f}",
        f"{up_rate:.0f} (upstream shape)",
        f"{ours_rate / up_rate:.2f}x",
        "",
        "",
    )
    report.add(
        f"claims, {ACQUIRERS} acquirers, {models:,} models",
        "claimed twice (max of rounds)",
        str(ours_twice),
        str(up_twice),
        "",
        "0",
        yes(ours_twice == 0),
    )
