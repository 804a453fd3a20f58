"""Property: whatever two tenants do, in whatever order (register, create, request and load base and fine-tuned
models, set storage prefixes, delete, load from a location), neither is ever given a path at, inside or above a
path the other has used or will use, and no load of one reads the other's files. Checked on the history of every
path granted (deleted models included) and on the rows the database holds at the end, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.core import ids
from model_manager.core.errors import ServiceError
from model_manager.core.identity import DEFAULT_TENANT_ID, Identity, Role
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.store.database import Database, _sqlite_engine
from model_manager.store.migrate import migrate
from tests.conftest import PG_URL, SKIP_LINE, TEST_LOADING, _pg_reachable
from tests.helpers import HF, OBJECT_STORE, Api

BUCKET = "store"
PAIRS = [(DEFAULT_TENANT_ID, "tenant-b"), ("t1", "tenant-b")]  # the default tenant's layout is the interesting one


def _paths(a: str, b: str) -> st.SearchStrategy[str]:
    """Relative paths built to collide: the roots, both tenants' names, what their models are called."""
    segments = st.sampled_from(["models", "tenants", "base-models", a, b, "x", "ft:base:y", "p"])
    return st.lists(segments, min_size=1, max_size=5).map("/".join)


def _ops(a: str, b: str) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    who = st.sampled_from([a, b])
    path = _paths(a, b)
    model = st.sampled_from(["x", "org/x", "y:1", "base"])
    op = st.one_of(
        st.tuples(st.just("prefix"), who, path),
        st.tuples(st.just("register"), who, st.one_of(st.none(), path)),
        st.tuples(st.just("base"), who, model, path),
        st.tuples(st.just("request_base"), who, model),
        st.tuples(st.just("claim_base"), who, path),
        st.tuples(st.just("request_ft"), who, path),
        st.tuples(st.just("claim_ft"), who),
        st.tuples(st.just("delete"), who, st.integers(0, 5)),
    )
    return st.lists(op, min_size=1, max_size=25)


def _overlap(p: str, q: str) -> bool:
    return ids.is_within(p, q) or ids.is_within(q, p)


@dataclass
class World:
    api: Api
    written: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # paths and prefixes granted
    read: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # bucket keys its loads copy

    @staticmethod
    def worker(tenant: str) -> Identity:
        return Identity(tenant, "", "", Role.WORKER)

    @staticmethod
    def admin(tenant: str) -> Identity:
        return Identity(tenant, "org", "p", Role.ADMIN)

    async def prefix(self, tenant: str) -> str:
        async with self.api.ctx.db.reading() as conn:
            return await self.api.ctx.path_prefix(conn, tenant)

    async def run(self, op: tuple[Any, ...]) -> None:
        kind, tenant, *args = op
        worker, admin, api = self.worker(tenant), self.admin(tenant), self.api
        if kind == "prefix":
            made = await api.worker.create_storage_config(worker, pb.CreateStorageConfigRequest(path_prefix=args[0]))
            self.written[tenant].add(made.path_prefix)
        elif kind == "register":
            register = pb.RegisterModelRequest(
                base_model="base", suffix="r", organization_id="org", project_id="p", path=args[0] or ""
            )
            self.written[tenant].add((await api.worker.register_model(worker, register)).path)
        elif kind == "base":
            model_id, path = args
            base = pb.CreateBaseModelRequest(id=model_id, path=path, formats=[pb.ModelFormat.HUGGING_FACE])
            await api.worker.create_base_model(worker, base)
            self.written[tenant].add(path)
        elif kind == "request_base":
            await api.models.create_model(admin, pb.CreateModelRequest(id=args[0], source_repository=HF))
        elif kind == "claim_base":
            claim = await api.worker.acquire_unloaded_base_model(worker, pb.AcquireUnloadedBaseModelRequest(holder="l"))
            if claim.base_model_id:
                report = pb.UpdateBaseModelLoadingStatusRequest(
                    id=claim.base_model_id, attempt=claim.attempt, status_message="loading", content_path=args[0]
                )
                await api.worker.update_base_model_loading_status(worker, report)
                self.written[tenant].add(args[0])
        elif kind == "request_ft":
            fine_tuned = pb.CreateModelRequest(
                is_fine_tuned_model=True,
                base_model_id="base",
                suffix=uuid.uuid4().hex[:8],
                source_repository=OBJECT_STORE,
                model_file_location=f"s3://{BUCKET}/{args[0]}",
            )
            await api.models.create_model(admin, fine_tuned)
            self.read[tenant].add(args[0])
        elif kind == "claim_ft":
            ft = await api.worker.acquire_unloaded_model(worker, pb.AcquireUnloadedModelRequest(holder="l"))
            if ft.model_id:
                self.written[tenant].add(ft.dest_path)
        elif kind == "delete":
            models = (await api.list(admin, include_loading_models=True)).data
            if models:
                await api.models.delete_model(admin, pb.DeleteModelRequest(id=models[args[0] % len(models)].id))

    async def rows(self) -> dict[str, set[str]]:
        """Every path the database holds, by tenant: model directories, GGUF files, load directories."""
        found: dict[str, set[str]] = defaultdict(set)
        async with self.api.ctx.db.reading() as conn:
            for sql in (
                "SELECT tenant_id, path FROM base_models",
                "SELECT tenant_id, gguf_model_path FROM base_models",
                "SELECT tenant_id, content_path FROM base_models",
                "SELECT tenant_id, path FROM models",
                "SELECT tenant_id, path_prefix FROM storage_configs",
            ):
                for tenant, path in (await conn.execute(sa.text(sql))).all():
                    if path:
                        found[tenant].add(path)
        return found


def _assert_walls(a: str, b: str, written: dict[str, set[str]], read: dict[str, set[str]]) -> None:
    for p in written[a]:
        for q in written[b]:
            assert not _overlap(p, q), (a, p, b, q)
    for reader, other in ((a, b), (b, a)):
        for key in read[reader]:
            for q in written[other]:
                assert not _overlap(key, q), (reader, "reads", key, other, q)


async def _example(db: Database, objects: Path, pair: tuple[str, str], ops: list[tuple[Any, ...]]) -> None:
    ctx = ServiceContext(db=db, objects=LocalStore(objects), loading=TEST_LOADING, platform_bucket=BUCKET)
    world = World(Api(ctx))
    # A base model each where its loader would put it, for fine-tuned models to name; then the events.
    setup = [("base", tenant, "base", f"{await world.prefix(tenant)}/base-models/base") for tenant in pair]
    for op in [*setup, *ops]:
        with contextlib.suppress(ServiceError):  # refused, with a reason: nothing was granted
            await world.run(op)
        for tenant in pair:  # the prefixes the server would place models under now count as used as well
            world.written[tenant].add(await world.prefix(tenant))
    _assert_walls(*pair, world.written, world.read)
    rows = await world.rows()
    _assert_walls(*pair, rows, defaultdict(set))


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


Fresh = Callable[[], Awaitable[Database]]  # an empty, migrated database for one example


def _sqlite(tmp: Path) -> Fresh:
    """Copies of one migrated SQLite file (migrating each time would cost more than the example)."""
    template = tmp / "template.db"

    async def make() -> None:
        db = Database(_sqlite_engine(str(template)))
        await migrate(db)
        await db.close()

    asyncio.run(make())

    async def fresh() -> Database:
        copy = tmp / f"{uuid.uuid4().hex}.db"
        shutil.copy(template, copy)
        return Database(_sqlite_engine(str(copy)))

    return fresh


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _postgres(name: str) -> Fresh:
    """One database of its own on the test server, migrated once and emptied for each example."""
    url = make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)

    async def make() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        db = Database(create_async_engine(url))
        await migrate(db)
        await db.close()

    asyncio.run(make())

    async def fresh() -> Database:
        db = Database(create_async_engine(url))
        async with db.engine.begin() as conn:
            tables = (
                "base_models, models, storage_configs, hf_model_repos, pending_deletions, aliases, alias_changes, "
                "model_pushes"
            )
            await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY"))
        return db

    return fresh


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fresh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    if request.param == "sqlite":
        yield _sqlite(tmp_path_factory.mktemp("walls"))
        return
    if not asyncio.run(_pg_reachable()):
        if os.environ.get("CI") == "true":
            pytest.fail(SKIP_LINE.format(url=PG_URL) + " (CI=true: failing instead of skipping)")
        pytest.skip(SKIP_LINE.format(url=PG_URL))
    name = f"mm_walls_{uuid.uuid4().hex[:10]}"
    yield _postgres(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@SETTINGS
@given(data=st.data())
def test_no_order_of_events_lets_a_tenant_reach_anothers_paths(
    data: st.DataObject, fresh: Fresh, tmp_path: Path
) -> None:
    pair = data.draw(st.sampled_from(PAIRS))
    ops = data.draw(_ops(*pair))

    async def run() -> None:
        db = await fresh()
        try:
            await _example(db, tmp_path / "objects", pair, ops)
        finally:
            await db.close()

    asyncio.run(run())
