"""Shared fixtures: a migrated database on SQLite and on real PostgreSQL, and a service context over it.

PostgreSQL: MM_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres) names a server on which the
tests create and drop their own database. Under CI=true an unreachable server fails the run; elsewhere the
PostgreSQL variants skip with one line saying how to point them at a server.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.config import LoadingConfig
from model_manager.objectstore.local import LocalStore
from model_manager.service.context import ServiceContext
from model_manager.store.database import Database, _sqlite_engine
from model_manager.store.migrate import migrate
from model_manager.store.tables import metadata

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_LINE = "PostgreSQL unreachable at {url}: set MM_TEST_PG_URL=postgresql://user@host:port/db to run these tests"


# The tests' fine-tuned models come from these buckets (`s3://bucket/...`, `s3://jobs/...`).
TEST_LOADING = LoadingConfig(lease_seconds=60, max_attempts=3, allowed_source_buckets=("bucket", "jobs"))


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _pg_reachable() -> bool:
    try:
        conn = await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test session (asyncpg SQLAlchemy URL)."""
    if not await _pg_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(SKIP_LINE.format(url=PG_URL) + " (CI=true: failing instead of skipping)")
        pytest.skip(SKIP_LINE.format(url=PG_URL))
    name = f"mm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    db = Database(create_async_engine(pg_url, pool_size=20, max_overflow=10))
    await migrate(db)
    yield db
    await db.close()


async def _truncate(db: Database) -> None:
    async with db.engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(_sqlite_engine(str(tmp_path / "test.db")))
    await migrate(database)
    yield database
    await database.close()


@pytest.fixture
async def postgres_db(pg_db: Database) -> Database:
    await _truncate(pg_db)
    return pg_db


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    """A migrated, empty database: one SQLite file per test, or the session's PostgreSQL database emptied.

    A plain fixture on purpose: it picks the async one by name, which pytest-asyncio can only run from here.
    """
    return request.getfixturevalue(f"{request.param}_db")  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def objects(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def ctx(db: Database, objects: LocalStore, clock: FakeClock) -> Iterator[ServiceContext]:
    yield ServiceContext(db=db, objects=objects, loading=TEST_LOADING, clock=clock)


@pytest.fixture(scope="session")
def grpcio_pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Google grpcio messages and stubs generated from our .proto, as an independent client would have them."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("grpcio_gen")
    proto = "llmariner/models/server/v1/model_manager_service.proto"
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(
        ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
    )
    assert rc == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("llmariner.models.server.v1.model_manager_service_pb2")
        pb2_grpc = importlib.import_module("llmariner.models.server.v1.model_manager_service_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return types.SimpleNamespace(pb2=pb2, grpc=pb2_grpc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server speaking the real protocol on a free localhost port; fake credentials in the env."""
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket for one test."""
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A stock registry (CNCF distribution), open to all."""
    from tests.fakes.oci_registry import run_registry

    with run_registry(tmp_path_factory.mktemp("registry-open")) as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A stock registry behind htpasswd (Basic) auth: tests.fakes.oci_registry.USER / PASSWORD."""
    from tests.fakes.oci_registry import run_registry

    with run_registry(tmp_path_factory.mktemp("registry-basic"), "basic") as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A stock registry behind token auth: anyone may pull, USER / PASSWORD may push."""
    from tests.fakes.oci_registry import run_registry

    with run_registry(tmp_path_factory.mktemp("registry-token"), "token") as registry:
        yield registry
