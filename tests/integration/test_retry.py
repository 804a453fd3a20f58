"""RetryModel and the attempt log, on SQLite and PostgreSQL: every failed attempt keeps its reason; a FAILED model
is loaded again with a fresh set of attempts, over REST and gRPC, while loaders of earlier attempts stay fenced off."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from model_manager.core.errors import FailedPrecondition, NotFound, PermissionDenied
from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from tests.conftest import FakeClock
from tests.helpers import OLLAMA, WHO, WORKER, Api, grpcio_models, rest_client

READER = Identity(WHO.tenant_id, WHO.organization_id, WHO.project_id, Role.READER)


async def _retry(api: Api, model_id: str, who: Identity = WHO) -> pb.Model:
    return await api.models.retry_model(who, pb.RetryModelRequest(id=model_id))


async def _fail_transiently(api: Api, clock: FakeClock, model_id: str, times: int) -> list[int]:
    """Claim the model and report a failure a later attempt may fix, `times` times; the claims' attempts."""
    attempts = []
    for _ in range(times):
        clock.advance(3600)  # past any retry delay
        claim = await api.acquire_base()
        assert claim.base_model_id == model_id
        attempts.append(claim.attempt)
        await api.base_status(model_id, retryable_failure=f"hub: 503 on attempt {claim.attempt}", attempt=claim.attempt)
    return attempts


async def test_each_failed_attempt_keeps_its_reason_and_a_retry_starts_a_fresh_set(api: Api, clock: FakeClock) -> None:
    await api.request_base("org/name")
    assert await _fail_transiently(api, clock, "org/name", 3) == [1, 2, 3]
    failed = await api.get("org/name")
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED
    assert failed.loading_failure_reason == "hub: 503 on attempt 3 (gave up after 3 attempts)"
    assert [(a.attempt, a.reason) for a in failed.loading_attempts] == [
        (1, "hub: 503 on attempt 1"),
        (2, "hub: 503 on attempt 2"),
        (3, "hub: 503 on attempt 3"),
    ]
    assert all(a.failed_at > 0 for a in failed.loading_attempts)

    retried = await _retry(api, "org/name")
    assert retried.loading_status == pb.ModelLoadingStatus.REQUESTED and retried.loading_failure_reason == ""
    assert len(retried.loading_attempts) == 3  # the history stays
    # Three more attempts, numbered on (the claim counter fences loaders of the earlier ones).
    assert await _fail_transiently(api, clock, "org/name", 2) == [4, 5]
    assert (await api.get("org/name")).loading_status == pb.ModelLoadingStatus.REQUESTED
    clock.advance(3600)
    last = await api.acquire_base()
    assert last.attempt == 6
    await api.base_status("org/name", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="401"), attempt=6)
    final = await api.get("org/name")
    assert final.loading_status == pb.ModelLoadingStatus.FAILED
    assert [a.reason for a in final.loading_attempts][3:] == ["hub: 503 on attempt 4", "hub: 503 on attempt 5", "401"]


async def test_lease_expiries_are_logged_and_a_stale_loader_stays_fenced_after_a_retry(
    api: Api, clock: FakeClock
) -> None:
    await api.request_base("org/name")
    for _ in range(3):
        stale = await api.acquire_base()
        clock.advance(61)  # the loader froze: its lease expires
    await api.acquire_base()
    failed = await api.get("org/name")
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED
    assert [a.reason for a in failed.loading_attempts] == ["the loader stopped reporting progress (lease expired)"] * 3
    await _retry(api, "org/name")
    fresh = await api.acquire_base()
    assert fresh.attempt == stale.attempt + 1
    with pytest.raises(FailedPrecondition, match="stale"):
        await api.base_status("org/name", status_message="I am back", attempt=stale.attempt)
    await api.base_status("org/name", status_message="going", attempt=fresh.attempt)


async def test_only_a_failed_model_that_can_be_loaded_is_retried_by_a_writer(api: Api) -> None:
    await api.request_base("gemma:2b", source=OLLAMA)
    with pytest.raises(FailedPrecondition, match='model "gemma:2b" is requested; only a failed model can be retried'):
        await _retry(api, "gemma:2b")
    claim = await api.acquire_base()
    await api.base_status("gemma:2b", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="x"), attempt=1)
    assert claim.attempt == 1
    with pytest.raises(PermissionDenied, match="retrying models needs the writer role"):
        await _retry(api, "gemma:2b", READER)
    with pytest.raises(NotFound):
        await _retry(api, "nope")
    await api.loaded_base("b")
    registered = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="b", suffix="s", organization_id="o", project_id=WHO.project_id)
    )
    await api.worker.update_model_loading_status(
        WORKER,
        pb.UpdateModelLoadingStatusRequest(id=registered.id, failure=pb.UpdateModelLoadingStatusRequestFailure("oom")),
    )
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=registered.id))
    with pytest.raises(FailedPrecondition, match="registered by a fine-tuning job"):
        await _retry(api, registered.id)
    assert (await _retry(api, "gemma:2b")).loading_status == pb.ModelLoadingStatus.REQUESTED


async def _failed(api: Api, model_id: str) -> None:
    await api.request_base(model_id, source=OLLAMA)
    claim = await api.acquire_base()
    failure = pb.UpdateBaseModelLoadingStatusRequestFailure(reason="manifest not found")
    await api.base_status(model_id, failure=failure, attempt=claim.attempt)


async def test_retry_over_rest_and_grpc(ctx: ServiceContext, api: Api, grpcio_pb: Any) -> None:
    async with rest_client(ctx) as client, grpcio_models(ctx, grpcio_pb) as stub:
        await _failed(api, "gemma:2b")
        await _failed(api, "phi:3")
        r = await client.post("/v1/models/gemma:2b:retry")
        body = await r.json()
        assert r.status == 200 and body["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
        assert body["loading_attempts"] == [
            {"attempt": 1, "reason": "manifest not found", "failed_at": body["loading_attempts"][0]["failed_at"]}
        ]
        r = await client.post("/v1/models/gemma:2b:retry")
        assert r.status == 400 and "only a failed model can be retried" in (await r.json())["message"]

        model = await stub.RetryModel(grpcio_pb.pb2.RetryModelRequest(id="phi:3"))
        assert model.loading_status == grpcio_pb.pb2.MODEL_LOADING_STATUS_REQUESTED
        assert [a.reason for a in model.loading_attempts] == ["manifest not found"]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.RetryModel(grpcio_pb.pb2.RetryModelRequest(id="phi:3"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
