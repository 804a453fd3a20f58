"""Shortcuts the service tests share: request models and drive them through the worker API as a loader would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from aiohttp.test_utils import TestClient, TestServer

from model_manager.api.grpc import InFlight, ModelsServicer, build_server
from model_manager.api.rest import RestApi
from model_manager.api.wire import PROTO
from model_manager.core.identity import DEFAULT_IDENTITY, DEFAULT_WORKER_IDENTITY, Identity, Role
from model_manager.core.ids import content_directory, content_key
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.auth import Authenticator
from model_manager.service.context import ServiceContext
from model_manager.service.health import Health
from model_manager.service.models import ModelsService
from model_manager.service.worker import WorkerService
from tests.conftest import free_port
from tests.fakes.hub import DEFAULT_COMMIT

WHO = DEFAULT_IDENTITY
WORKER = DEFAULT_WORKER_IDENTITY
OTHER_PROJECT = Identity(WHO.tenant_id, WHO.organization_id, "other-project", Role.ADMIN)
OTHER_TENANT = Identity("other-tenant", "default", "default", Role.ADMIN)

HF = pb.SourceRepository.HUGGING_FACE
OLLAMA = pb.SourceRepository.OLLAMA
OBJECT_STORE = pb.SourceRepository.OBJECT_STORE


def no_auth(ctx: ServiceContext) -> Authenticator:
    """The authenticator of a server with auth off: every caller is the default identity."""
    return Authenticator(ctx.db, enabled=False)


class Api:
    """The two services over one context."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.models = ModelsService(ctx)
        self.worker = WorkerService(ctx)

    async def request_base(
        self, model_id: str, source: pb.SourceRepository = HF, who: Identity = WHO, **kw: Any
    ) -> pb.Model:
        return await self.models.create_model(who, pb.CreateModelRequest(id=model_id, source_repository=source, **kw))

    async def loaded_base(self, model_id: str, path: str | None = None, project_id: str = "") -> pb.BaseModel:
        """A base model as the loader leaves it: SUCCEEDED with a path and the Hugging Face format."""
        return await self.worker.create_base_model(
            WORKER,
            pb.CreateBaseModelRequest(
                id=model_id,
                path=path or f"models/base-models/{model_id}",
                formats=[pb.ModelFormat.HUGGING_FACE],
                source_repository=HF,
                project_id=project_id,
            ),
        )

    async def fine_tuned(
        self,
        base: str,
        suffix: str,
        who: Identity = WHO,
        source: pb.SourceRepository = OBJECT_STORE,
        location: str = "",
    ) -> pb.Model:
        return await self.models.create_model(
            who,
            pb.CreateModelRequest(
                is_fine_tuned_model=True,
                base_model_id=base,
                suffix=suffix,
                source_repository=source,
                model_file_location=location or f"s3://bucket/jobs/{suffix}",
            ),
        )

    async def loaded_fine_tuned(self, base: str, suffix: str, who: Identity = WHO) -> str:
        model = await self.fine_tuned(base, suffix, who)
        claim = await self.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest())
        assert claim.model_id == model.id
        await self.worker.update_model_loading_status(
            WORKER, pb.UpdateModelLoadingStatusRequest(id=model.id, success=pb.UpdateModelLoadingStatusRequestSuccess())
        )
        return model.id

    async def get(self, model_id: str, who: Identity = WHO, loading: bool = True) -> pb.Model:
        req = pb.GetModelRequest(id=model_id, include_loading_model=loading)
        return pb.Model.parse(await self.models.get_model_encoded(who, req, PROTO))

    async def list(self, who: Identity = WHO, **kw: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse.parse(
            await self.models.list_models_encoded(who, pb.ListModelsRequest(**kw), PROTO)
        )

    async def activate(self, model_id: str, who: Identity = WHO) -> None:
        await self.models.activate_model(who, pb.ActivateModelRequest(id=model_id))

    async def acquire_base(self, holder: str = "loader-1") -> pb.AcquireUnloadedBaseModelResponse:
        return await self.worker.acquire_unloaded_base_model(WORKER, pb.AcquireUnloadedBaseModelRequest(holder=holder))

    async def base_status(self, model_id: str, **kw: Any) -> None:
        await self.worker.update_base_model_loading_status(
            WORKER, pb.UpdateBaseModelLoadingStatusRequest(id=model_id, **kw)
        )


@asynccontextmanager
async def rest_client(ctx: ServiceContext) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The REST front over `ctx` on a real port (auth off), and an HTTP client of it."""
    client = TestClient(TestServer(RestApi(ModelsService(ctx), Health(ctx).ready, no_auth(ctx)).app()))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def grpcio_models(ctx: ServiceContext, grpcio_pb: Any) -> AsyncIterator[Any]:
    """The public gRPC port over `ctx` (auth off), and a grpcio ModelsService stub of it."""
    server = build_server(ModelsServicer(ModelsService(ctx), InFlight(), no_auth(ctx)), with_health=True)
    port = free_port()
    await server.start("127.0.0.1", port)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield grpcio_pb.grpc.ModelsServiceStub(channel)
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()


def hf_prefix(model_id: str, commit: str = DEFAULT_COMMIT) -> str:
    """Where a Hugging Face model loaded at `commit` is stored: its own content directory."""
    return f"models/base-models/{content_directory(model_id, content_key('hugging-face', model_id, commit))}"
