"""WatchModel over real HTTP (NDJSON) and real HTTP/2 (grpcio's stub), on SQLite and PostgreSQL: the model at once,
again at each change a loader reports (to this replica or another), and the end of the stream when the load ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import watch
from model_manager.service.cache import ResponseCache
from model_manager.service.context import ServiceContext
from tests.helpers import Api, grpcio_models, rest_client

OK = pb.UpdateBaseModelLoadingStatusRequestSuccess()
FAST = 0.05  # the watchers' poll, so that the tests do not wait half a second per change


@pytest.fixture
def ctx_fast(ctx: ServiceContext) -> ServiceContext:
    """The server's context as `model-manager run` makes it (response cache on); the tests write through `ctx`."""
    served = replace(ctx, cache=ResponseCache())
    served.changes.interval = FAST
    return served


@pytest.fixture
async def http(ctx_fast: ServiceContext) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with rest_client(ctx_fast) as client:
        yield client


async def _line(r: ClientResponse) -> dict[str, Any]:
    async with asyncio.timeout(10):
        line = await r.content.readline()
    assert line.endswith(b"\n"), f"the stream ended instead: {line!r}"
    return dict(json.loads(line))


async def _ended(r: ClientResponse) -> None:
    async with asyncio.timeout(10):
        assert await r.content.readline() == b""


async def test_rest_watch_follows_a_load_to_its_converted_id(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch")
    assert r.status == 200 and r.content_type == "application/x-ndjson"
    assert len(r.headers["X-Request-Id"]) == 32
    first = await _line(r)
    assert (first["id"], first["loading_status"]) == ("org/name", "MODEL_LOADING_STATUS_REQUESTED")
    claim = await api.acquire_base()
    assert (await _line(r))["loading_status"] == "MODEL_LOADING_STATUS_LOADING"
    numbers = pb.LoadingProgress(bytes_done=1 << 20, bytes_total=4 << 20, files_done=1, files_total=3)
    await api.base_status("org/name", status_message="1 MiB of 4 MiB", progress=numbers, attempt=claim.attempt)
    event = await _line(r)
    assert event["loading_status_message"] == "1 MiB of 4 MiB"
    assert event["loading_progress"] == {
        "bytes_done": 1 << 20,
        "bytes_total": 4 << 20,
        "files_done": 1,
        "files_total": 3,
    }
    await api.loaded_base("org-name")
    await api.base_status("org/name", success=OK, attempt=claim.attempt)
    last = await _line(r)
    assert (last["id"], last["loading_status"]) == ("org-name", "MODEL_LOADING_STATUS_SUCCEEDED")
    await _ended(r)


async def test_a_loaded_model_is_one_event_and_colon_ids_still_get(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.loaded_base("gemma:2b")
    r = await http.get("/v1/models/gemma:2b:watch")
    assert (await _line(r))["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
    await _ended(r)
    r = await http.get("/v1/models/gemma:2b")  # a tail that is no verb is part of the id
    assert (r.status, (await r.json())["id"]) == (200, "gemma:2b")


async def test_a_failed_load_ends_the_stream_with_its_reason(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.request_base("gemma:2b", source=pb.SourceRepository.OLLAMA)
    r = await http.get("/v1/models/gemma:2b:watch")
    assert (await _line(r))["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
    claim = await api.acquire_base()
    failure = pb.UpdateBaseModelLoadingStatusRequestFailure(reason="manifest not found")
    await api.base_status("gemma:2b", failure=failure, attempt=claim.attempt)
    while (event := await _line(r))["loading_status"] != "MODEL_LOADING_STATUS_FAILED":
        assert event["loading_status"] == "MODEL_LOADING_STATUS_LOADING"
    assert event["loading_failure_reason"] == "manifest not found"
    await _ended(r)


async def test_refusals_come_before_the_stream_as_ordinary_errors(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    r = await http.get("/v1/models/nope:watch")
    assert (r.status, r.content_type) == (404, "application/json")
    body = await r.json()
    assert body["message"] == 'model "nope" not found' and body["request_id"] == r.headers["X-Request-Id"]
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch", params={"timeout_seconds": "-1"})
    assert r.status == 400
    assert (await r.json())["message"] == "timeout_seconds must not be negative, got -1"
    r = await http.post("/v1/models/org/name:watch")
    assert r.status == 404 and ":activate or :deactivate" in (await r.json())["message"]


async def test_a_model_deleted_while_watched_ends_the_stream_with_an_error_line(
    http: TestClient,  # type: ignore[type-arg]
    api: Api,
) -> None:
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch", headers={"X-Request-Id": "watch-1"})
    await _line(r)
    assert (await http.delete("/v1/models/org/name")).status == 200
    last = await _line(r)
    assert (last["code"], last["message"], last["request_id"]) == (5, 'model "org/name" not found', "watch-1")
    await _ended(r)


async def test_timeout_seconds_ends_a_quiet_stream(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch", params={"timeout_seconds": "1"})
    assert (await _line(r))["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
    await _ended(r)  # within _ended's 10 s, though the model is still requested


async def test_shutdown_ends_streams_with_unavailable(http: TestClient, api: Api, ctx_fast: ServiceContext) -> None:  # type: ignore[type-arg]
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch")
    await _line(r)
    ctx_fast.changes.close()
    last = await _line(r)
    assert last["code"] == 14 and "shutting down" in last["message"]
    await _ended(r)


async def test_a_watcher_on_one_replica_sees_reports_made_to_another(ctx: ServiceContext, api: Api) -> None:
    # Another server: its own service context (own poll, no cache), the same database.
    other = replace(ctx)
    other.changes.interval = FAST
    async with rest_client(other) as client:
        await api.request_base("org/name")
        r = await client.get("/v1/models/org/name:watch")
        await _line(r)
        claim = await api.acquire_base()  # reported through `api`, i.e. to the first replica
        numbers = pb.LoadingProgress(bytes_done=7, bytes_total=9, files_done=0, files_total=1)
        await api.base_status("org/name", status_message="7 B of 9 B", progress=numbers, attempt=claim.attempt)
        while "loading_progress" not in (event := await _line(r)):
            pass
        assert event["loading_progress"]["bytes_done"] == 7


async def test_grpc_watch_streams_models_and_maps_errors(ctx_fast: ServiceContext, api: Api, grpcio_pb: Any) -> None:
    pb2 = grpcio_pb.pb2
    async with grpcio_models(ctx_fast, grpcio_pb) as stub:
        await api.request_base("org/name")
        call = stub.WatchModel(pb2.WatchModelRequest(id="org/name"))
        stream = aiter(call)
        first = await anext(stream)
        assert (first.id, first.loading_status) == ("org/name", pb2.MODEL_LOADING_STATUS_REQUESTED)
        claim = await api.acquire_base()
        numbers = pb.LoadingProgress(bytes_done=5, bytes_total=10, files_done=1, files_total=2)
        await api.base_status("org/name", status_message="half", progress=numbers, attempt=claim.attempt)
        while not (event := await anext(stream)).HasField("loading_progress"):
            pass
        assert (event.loading_progress.bytes_done, event.loading_progress.files_total) == (5, 2)
        await api.loaded_base("org-name")
        await api.base_status("org/name", success=OK, attempt=claim.attempt)
        rest = [m async for m in stream]
        assert (rest[-1].id, rest[-1].loading_status) == ("org-name", pb2.MODEL_LOADING_STATUS_SUCCEEDED)
        assert await call.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as e:
            async for _ in stub.WatchModel(pb2.WatchModelRequest(id="nope")):
                pass
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details() == 'model "nope" not found'


async def test_a_quiet_stream_repeats_the_model_as_a_heartbeat(
    http: TestClient,  # type: ignore[type-arg]
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "HEARTBEAT_SECONDS", 0.2)
    await api.request_base("org/name")
    r = await http.get("/v1/models/org/name:watch")
    assert await _line(r) == await _line(r)  # nothing changed, and still a line came
