"""The object store (moto's S3 server) stopped and started again while models load and are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from model_manager.config import S3Config
from model_manager.objectstore.s3 import S3Store
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.models import ModelsService
from tests.conftest import free_port
from tests.helpers import WHO, Api, hf_prefix
from tests.loader.conftest import Harness
from tests.objects import get

pytestmark = pytest.mark.slow

BUCKET = "outage"


class Moto:
    """A private moto S3 server on its own port, to stop and start at will (moto keeps the buckets' contents in
    the test process, so they are there again after a start)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def moto(s3_endpoint: str) -> Iterator[Moto]:  # s3_endpoint: the fake credentials in the environment
    m = Moto()
    m.start()
    yield m
    m.stop()


@pytest.fixture
async def s3_store(moto: Moto) -> AsyncIterator[S3Store]:
    store = S3Store(S3Config(endpoint_url=moto.url, region="us-east-1", bucket=BUCKET, part_size_mib=5))
    yield store
    await store.close()


async def test_a_load_during_an_outage_is_tried_again_and_finishes(
    harness: Harness, api: Api, moto: Moto, s3_store: S3Store
) -> None:
    harness.store = s3_store
    harness.raw = {**harness.raw, "objectStore": {"s3": {"endpointUrl": moto.url, "bucket": BUCKET}}}
    weights = bytes(range(256)) * 4096 * 4
    harness.hub.add("org/m", {"config.json": b"{}", "model.safetensors": weights})
    await api.request_base("org/m")
    moto.stop()
    await harness.drain()
    model = await api.get("org/m")
    assert model.loading_status == pb.ModelLoadingStatus.REQUESTED, model
    assert model.loading_status_message.startswith("attempt 1 failed: ") and "S3" in model.loading_status_message
    moto.start()
    harness.ctx.clock.advance(60)  # type: ignore[attr-defined]
    await harness.drain()
    assert (await api.get("org-m")).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert await get(s3_store, f"{hf_prefix('org/m')}/model.safetensors") == weights


async def test_a_delete_during_an_outage_removes_the_files_once_the_store_is_back(
    harness: Harness, api: Api, moto: Moto, s3_store: S3Store
) -> None:
    harness.store = s3_store
    harness.raw = {**harness.raw, "objectStore": {"s3": {"endpointUrl": moto.url, "bucket": BUCKET}}}
    harness.hub.add("org/d", {"config.json": b"{}", "model.safetensors": b"d" * 4096})
    await api.request_base("org/d")
    await harness.drain()
    models = ModelsService(replace(api.ctx, objects=s3_store))
    moto.stop()
    resp = await asyncio.wait_for(models.delete_model(WHO, pb.DeleteModelRequest(id="org-d")), 60)
    assert resp.deleted
    assert await models.removals.retry_pending() == 1  # still down: kept
    moto.start()  # moto keeps its buckets in the process: the files are there again
    assert [o.key for o in await s3_store.list_objects(f"{hf_prefix('org/d')}/")] != []
    assert await models.removals.retry_pending() == 0
    assert await s3_store.list_objects(f"{hf_prefix('org/d')}/") == []
