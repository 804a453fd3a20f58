"""The gRPC fronts (grpclib): thin servicers over the services; identity and errors handled in one wrapper."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import grpclib.const
from grpclib import GRPCError
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Stream

from model_manager.api.draining import DrainingServer
from model_manager.api.grpc_wire import MAX_REQUEST_BYTES, CheckedCodec, Encoded, SizeLimitedService
from model_manager.api.status import status_of
from model_manager.api.wire import PROTO
from model_manager.core import metrics
from model_manager.core.errors import ServiceError
from model_manager.core.identity import DEFAULT_WORKER_IDENTITY, Identity
from model_manager.proto.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.aliases import AliasService
from model_manager.service.auth import Api, Authenticator, Credentials
from model_manager.service.models import ModelsService
from model_manager.service.pushes import PushService
from model_manager.service.worker import WorkerService

log = logging.getLogger(__name__)
ACCESS = logging.getLogger("model_manager.access")

# The caller of the call being served; None outside a network call (the in-process loader of role "all").
_caller: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("caller", default=None)

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


Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _credentials(stream: Stream[Any, Any]) -> Credentials:
    def text(key: str) -> str | None:
        value = stream.metadata.get(key) if stream.metadata else None
        return value if isinstance(value, str) else None  # binary metadata ("-bin" keys) never carries these

    return Credentials(text("authorization"), text("openai-organization"), text("openai-project"))


def authenticated(
    func: Handler,
    auth: Authenticator,
    api: Api,
    inflight: InFlight | None = None,
    access_log: bool = True,
    method: str = "",
) -> Handler:
    """A handler that first authenticates the caller (refusing with the mapped status) and serves as them; every
    call is counted, timed and logged (one line) with the status it ended with."""
    label = "worker" if api is Api.WORKER else "grpc"

    async def handler(stream: Stream[Any, Any]) -> None:
        if inflight is not None:
            inflight.enter()
        start = time.perf_counter()
        status = grpclib.const.Status.OK
        try:
            try:
                who = await auth.authenticate(_credentials(stream), api)
            except ServiceError as e:
                raise GRPCError(status_of(e), e.message) from e
            token = _caller.set(who)
            try:
                await func(stream)
            finally:
                _caller.reset(token)
        except GRPCError as e:
            status = e.status
            raise
        except BaseException:
            status = grpclib.const.Status.UNKNOWN  # grpclib answers UNKNOWN (cancelled calls count here too)
            raise
        finally:
            if inflight is not None:
                inflight.leave()
            _observe(label, method, status, time.perf_counter() - start, access_log)

    return handler


def _observe(api: str, method: str, status: grpclib.const.Status, elapsed: float, access_log: bool) -> None:
    metrics.observe_request(api, method, status.name, elapsed)
    if access_log:
        fields = {"api": api, "method": method, "status": status.name, "duration_ms": round(elapsed * 1000, 2)}
        ACCESS.info("%s %s", method, status.name, extra={"fields": fields})


def authenticated_service(service: Any, auth: Authenticator, api: Api) -> Any:
    """Any grpclib service (server reflection) behind the same authentication as the API it is served with."""

    class Authenticated:
        def __mapping__(self) -> dict[str, grpclib.const.Handler]:
            mapping: dict[str, grpclib.const.Handler] = service.__mapping__()
            return {name: h._replace(func=authenticated(h.func, auth, api, method=name)) for name, h in mapping.items()}

    return Authenticated()


class _Servicer:
    """Mixin: wraps every generated handler with authentication, in-flight counting and error mapping."""

    inflight: InFlight
    auth: Authenticator
    api: Api
    # Who direct in-process calls (the loader of role "all") run as.
    local_caller: Identity = DEFAULT_WORKER_IDENTITY
    access_log: bool = True  # logging.requests

    async def _call(self, method: Callable[[Identity, Req], Awaitable[Resp]], message: Req) -> Resp:
        """Run a service method as the current caller; service errors become gRPC statuses here and only here.

        Network calls and direct in-process calls both pass through this, so callers of the servicer always see
        GRPCError, exactly as callers of the generated stub do.
        """
        caller = _caller.get()
        try:
            if caller is not None:
                return await method(caller, message)
            return await self._in_process(method(self.local_caller, message))
        except ServiceError as e:
            raise GRPCError(status_of(e), e.message) from e

    async def _in_process(self, call: Awaitable[Resp]) -> Resp:
        """Run a direct call the way a network call runs on the server: to its end, even if the caller is cancelled
        meanwhile (a loader stopping mid-report). Cancelling a database transaction half-way is what must not
        happen: SQLite keeps the write lock of a connection torn down mid-statement until it is garbage collected,
        and every other writer waits for it."""
        task = asyncio.ensure_future(call)
        self.inflight.enter()  # shutdown waits for it like for any other call
        task.add_done_callback(self._call_ended)
        return await asyncio.shield(task)

    def _call_ended(self, task: asyncio.Future[Any]) -> None:
        self.inflight.leave()
        if not task.cancelled():
            task.exception()  # retrieved: a caller that stopped waiting has no use for the answer

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping: dict[str, grpclib.const.Handler] = super().__mapping__()  # type: ignore[misc]
        wrap = functools.partial(
            authenticated, auth=self.auth, api=self.api, inflight=self.inflight, access_log=self.access_log
        )
        return {name: h._replace(func=wrap(h.func, method=name)) for name, h in mapping.items()}


class ModelsServicer(_Servicer, pb.ModelsServiceBase):
    api = Api.PUBLIC

    def __init__(
        self, service: ModelsService, inflight: InFlight, auth: Authenticator, pushes: PushService | None = None
    ) -> None:
        self.service = service
        self.aliases = AliasService(service.ctx)
        self.pushes = pushes or PushService(service.ctx, None)
        self.inflight = inflight
        self.auth = auth

    # Reads answer with pre-encoded bytes (see grpc_wire.Encoded), which the codec sends as they are.
    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        encoded = await self._call(functools.partial(self.service.get_model_encoded, encoding=PROTO), message)
        return cast(pb.Model, Encoded(encoded))

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        encoded = await self._call(functools.partial(self.service.list_models_encoded, encoding=PROTO), message)
        return cast(pb.ListModelsResponse, Encoded(encoded))

    async def delete_model(self, message: pb.DeleteModelRequest) -> pb.DeleteModelResponse:
        return await self._call(self.service.delete_model, message)

    async def create_model(self, message: pb.CreateModelRequest) -> pb.Model:
        return await self._call(self.service.create_model, message)

    async def update_model(self, message: pb.UpdateModelRequest) -> pb.Model:
        return await self._call(self.service.update_model, message)

    async def activate_model(self, message: pb.ActivateModelRequest) -> pb.ActivateModelResponse:
        return await self._call(self.service.activate_model, message)

    async def deactivate_model(self, message: pb.DeactivateModelRequest) -> pb.DeactivateModelResponse:
        return await self._call(self.service.deactivate_model, message)

    async def retry_model(self, message: pb.RetryModelRequest) -> pb.Model:
        return await self._call(self.service.retry_model, message)

    async def set_alias(self, message: pb.SetAliasRequest) -> pb.Alias:
        return await self._call(self.aliases.set_alias, message)

    async def get_alias(self, message: pb.GetAliasRequest) -> pb.Alias:
        return await self._call(self.aliases.get_alias, message)

    async def list_aliases(self, message: pb.ListAliasesRequest) -> pb.ListAliasesResponse:
        return await self._call(self.aliases.list_aliases, message)

    async def delete_alias(self, message: pb.DeleteAliasRequest) -> pb.DeleteAliasResponse:
        return await self._call(self.aliases.delete_alias, message)

    async def push_model(self, message: pb.PushModelRequest) -> pb.ModelPush:
        return await self._call(self.pushes.push_model, message)

    async def get_model_push(self, message: pb.GetModelPushRequest) -> pb.ModelPush:
        return await self._call(self.pushes.get_model_push, message)

    async def list_model_pushes(self, message: pb.ListModelPushesRequest) -> pb.ListModelPushesResponse:
        return await self._call(self.pushes.list_model_pushes, message)

    async def watch_model(self, message: pb.WatchModelRequest) -> AsyncIterator[pb.Model]:
        events = self.service.watch_model_encoded(_caller.get() or self.local_caller, message, PROTO)
        try:
            async for event in events:
                yield cast(pb.Model, Encoded(event))
        except ServiceError as e:  # before the first event (bad id, unknown model) or ending the stream
            raise GRPCError(status_of(e), e.message) from e
        finally:
            await events.aclose()


class WorkerServicer(_Servicer, pb.ModelsWorkerServiceBase):
    """Also the loader's worker interface in role "all": same methods and messages as the generated stub."""

    api = Api.WORKER

    def __init__(
        self,
        service: WorkerService,
        inflight: InFlight,
        auth: Authenticator,
        local_caller: Identity = DEFAULT_WORKER_IDENTITY,
    ) -> None:
        self.service = service
        self.inflight = inflight
        self.auth = auth
        self.local_caller = local_caller

    async def create_storage_config(self, message: pb.CreateStorageConfigRequest) -> pb.StorageConfig:
        return await self._call(self.service.create_storage_config, message)

    async def get_storage_config(self, message: pb.GetStorageConfigRequest) -> pb.StorageConfig:
        return await self._call(self.service.get_storage_config, message)

    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        return await self._call(self.service.get_model, message)

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        encoded = await self._call(functools.partial(self.service.list_models_encoded, encoding=PROTO), message)
        return cast(pb.ListModelsResponse, Encoded(encoded))

    async def register_model(self, message: pb.RegisterModelRequest) -> pb.RegisterModelResponse:
        return await self._call(self.service.register_model, message)

    async def publish_model(self, message: pb.PublishModelRequest) -> pb.PublishModelResponse:
        return await self._call(self.service.publish_model, message)

    async def get_model_path(self, message: pb.GetModelPathRequest) -> pb.GetModelPathResponse:
        return await self._call(self.service.get_model_path, message)

    async def get_model_attributes(self, message: pb.GetModelAttributesRequest) -> pb.ModelAttributes:
        return await self._call(self.service.get_model_attributes, message)

    async def create_base_model(self, message: pb.CreateBaseModelRequest) -> pb.BaseModel:
        return await self._call(self.service.create_base_model, message)

    async def get_base_model_path(self, message: pb.GetBaseModelPathRequest) -> pb.GetBaseModelPathResponse:
        return await self._call(self.service.get_base_model_path, message)

    async def create_hf_model_repo(self, message: pb.CreateHfModelRepoRequest) -> pb.HfModelRepo:
        return await self._call(self.service.create_hf_model_repo, message)

    async def get_hf_model_repo(self, message: pb.GetHfModelRepoRequest) -> pb.HfModelRepo:
        return await self._call(self.service.get_hf_model_repo, message)

    async def acquire_unloaded_base_model(
        self, message: pb.AcquireUnloadedBaseModelRequest
    ) -> pb.AcquireUnloadedBaseModelResponse:
        return await self._call(self.service.acquire_unloaded_base_model, message)

    async def acquire_unloaded_model(self, message: pb.AcquireUnloadedModelRequest) -> pb.AcquireUnloadedModelResponse:
        return await self._call(self.service.acquire_unloaded_model, message)

    async def update_base_model_loading_status(
        self, message: pb.UpdateBaseModelLoadingStatusRequest
    ) -> pb.UpdateBaseModelLoadingStatusResponse:
        return await self._call(self.service.update_base_model_loading_status, message)

    async def update_model_loading_status(
        self, message: pb.UpdateModelLoadingStatusRequest
    ) -> pb.UpdateModelLoadingStatusResponse:
        return await self._call(self.service.update_model_loading_status, message)

    async def find_stored_content(self, message: pb.FindStoredContentRequest) -> pb.FindStoredContentResponse:
        return await self._call(self.service.find_stored_content, message)


def build_server(
    servicer: ModelsServicer | WorkerServicer, with_health: bool, max_request_bytes: int = MAX_REQUEST_BYTES
) -> DrainingServer:
    """A grpclib server for `servicer`, plus health (public port, open to all) and server reflection (both ports,
    behind the servicer's authentication)."""
    served: list[Any] = [servicer, Health()] if with_health else [servicer]
    reflection = ServerReflection.extend(served, pool=default_google_proto_descriptor_pool)[len(served) :]
    served += [authenticated_service(r, servicer.auth, servicer.api) for r in reflection]
    return DrainingServer([SizeLimitedService(s, max_request_bytes) for s in served], codec=CheckedCodec())
