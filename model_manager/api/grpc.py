"""The gRPC fronts (grpclib): thin servicers over the services; identity and errors handled in one wrapper."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import grpclib.const
from grpclib import GRPCError
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server, Stream

from model_manager.api.gen.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from model_manager.api.gen.llmariner.models.server import v1 as pb
from model_manager.api.status import status_of
from model_manager.errors import ServiceError
from model_manager.identity import DEFAULT_WORKER_IDENTITY, Identity, identity_from_headers
from model_manager.service.models import ModelsService
from model_manager.service.worker import WorkerService

log = logging.getLogger(__name__)

# The caller of the call being served. Direct in-process calls (the loader in role "all") see the worker default.
_caller: contextvars.ContextVar[Identity] = contextvars.ContextVar("caller", default=DEFAULT_WORKER_IDENTITY)

Handler = Callable[[Stream[Any, Any]], Coroutine[Any, Any, None]]


class InFlight:
    """Counts calls being served, so shutdown can wait for them before closing connections."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
            return True
        except TimeoutError:
            return False


def _wrap(func: Handler, who: Callable[[Stream[Any, Any]], Identity], inflight: InFlight) -> Handler:
    async def handler(stream: Stream[Any, Any]) -> None:
        inflight.enter()
        token = _caller.set(who(stream))
        try:
            await func(stream)
        except ServiceError as e:
            raise GRPCError(status_of(e), e.message) from e
        finally:
            _caller.reset(token)
            inflight.leave()

    return handler


class _Servicer:
    """Mixin: wraps every generated handler with identity and error mapping."""

    inflight: InFlight

    def _identity(self, stream: Stream[Any, Any]) -> Identity:
        return identity_from_headers(stream.metadata)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping: dict[str, grpclib.const.Handler] = super().__mapping__()  # type: ignore[misc]
        return {name: h._replace(func=_wrap(h.func, self._identity, self.inflight)) for name, h in mapping.items()}


class ModelsServicer(_Servicer, pb.ModelsServiceBase):
    def __init__(self, service: ModelsService, inflight: InFlight) -> None:
        self.service = service
        self.inflight = inflight

    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        return await self.service.get_model(_caller.get(), message)

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return await self.service.list_models(_caller.get(), message)

    async def delete_model(self, message: pb.DeleteModelRequest) -> pb.DeleteModelResponse:
        return await self.service.delete_model(_caller.get(), message)

    async def create_model(self, message: pb.CreateModelRequest) -> pb.Model:
        return await self.service.create_model(_caller.get(), message)

    async def update_model(self, message: pb.UpdateModelRequest) -> pb.Model:
        return await self.service.update_model(_caller.get(), message)

    async def activate_model(self, message: pb.ActivateModelRequest) -> pb.ActivateModelResponse:
        return await self.service.activate_model(_caller.get(), message)

    async def deactivate_model(self, message: pb.DeactivateModelRequest) -> pb.DeactivateModelResponse:
        return await self.service.deactivate_model(_caller.get(), message)


class WorkerServicer(_Servicer, pb.ModelsWorkerServiceBase):
    """Also the loader's worker interface in role "all": same methods and messages as the generated stub."""

    def __init__(self, service: WorkerService, inflight: InFlight) -> None:
        self.service = service
        self.inflight = inflight

    def _identity(self, stream: Stream[Any, Any]) -> Identity:
        return DEFAULT_WORKER_IDENTITY

    async def create_storage_config(self, message: pb.CreateStorageConfigRequest) -> pb.StorageConfig:
        return await self.service.create_storage_config(_caller.get(), message)

    async def get_storage_config(self, message: pb.GetStorageConfigRequest) -> pb.StorageConfig:
        return await self.service.get_storage_config(_caller.get(), message)

    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        return await self.service.get_model(_caller.get(), message)

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        return await self.service.list_models(_caller.get(), message)

    async def register_model(self, message: pb.RegisterModelRequest) -> pb.RegisterModelResponse:
        return await self.service.register_model(_caller.get(), message)

    async def publish_model(self, message: pb.PublishModelRequest) -> pb.PublishModelResponse:
        return await self.service.publish_model(_caller.get(), message)

    async def get_model_path(self, message: pb.GetModelPathRequest) -> pb.GetModelPathResponse:
        return await self.service.get_model_path(_caller.get(), message)

    async def get_model_attributes(self, message: pb.GetModelAttributesRequest) -> pb.ModelAttributes:
        return await self.service.get_model_attributes(_caller.get(), message)

    async def create_base_model(self, message: pb.CreateBaseModelRequest) -> pb.BaseModel:
        return await self.service.create_base_model(_caller.get(), message)

    async def get_base_model_path(self, message: pb.GetBaseModelPathRequest) -> pb.GetBaseModelPathResponse:
        return await self.service.get_base_model_path(_caller.get(), message)

    async def create_hf_model_repo(self, message: pb.CreateHfModelRepoRequest) -> pb.HfModelRepo:
        return await self.service.create_hf_model_repo(_caller.get(), message)

    async def get_hf_model_repo(self, message: pb.GetHfModelRepoRequest) -> pb.HfModelRepo:
        return await self.service.get_hf_model_repo(_caller.get(), message)

    async def acquire_unloaded_base_model(
        self, message: pb.AcquireUnloadedBaseModelRequest
    ) -> pb.AcquireUnloadedBaseModelResponse:
        return await self.service.acquire_unloaded_base_model(_caller.get(), message)

    async def acquire_unloaded_model(self, message: pb.AcquireUnloadedModelRequest) -> pb.AcquireUnloadedModelResponse:
        return await self.service.acquire_unloaded_model(_caller.get(), message)

    async def update_base_model_loading_status(
        self, message: pb.UpdateBaseModelLoadingStatusRequest
    ) -> pb.UpdateBaseModelLoadingStatusResponse:
        return await self.service.update_base_model_loading_status(_caller.get(), message)

    async def update_model_loading_status(
        self, message: pb.UpdateModelLoadingStatusRequest
    ) -> pb.UpdateModelLoadingStatusResponse:
        return await self.service.update_model_loading_status(_caller.get(), message)


def build_server(services: list[Any], with_health: bool) -> Server:
    """A grpclib server for `services`, plus health (public port) and server reflection (both ports)."""
    all_services = list(services)
    if with_health:
        all_services.append(Health())
    return Server(ServerReflection.extend(all_services, pool=default_google_proto_descriptor_pool))
