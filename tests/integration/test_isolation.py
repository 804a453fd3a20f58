"""Isolation with auth on, over REST and gRPC with independent clients (aiohttp, grpcio): two tenants, two projects
in one of them. Nothing one caller does reaches what is not theirs, and keys only open their own API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from model_manager.api.grpc import InFlight, ModelsServicer, WorkerServicer, build_server
from model_manager.api.rest import RestApi
from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.auth import Authenticator
from model_manager.service.context import ServiceContext
from model_manager.service.health import Health
from model_manager.service.keys import KeyScope, KeyService
from model_manager.service.models import ModelsService
from model_manager.service.worker import WorkerService
from tests.conftest import free_port
from tests.helpers import HF, OBJECT_STORE

A_P1 = Identity("tenant-a", "org-a", "p1", Role.ADMIN)
A_P2 = Identity("tenant-a", "org-a", "p2", Role.ADMIN)
B_P1 = Identity("tenant-b", "org-b", "p1", Role.ADMIN)  # tenant b has a project named p1 too
A_WORKER = Identity("tenant-a", "", "", Role.WORKER)
B_WORKER = Identity("tenant-b", "", "", Role.WORKER)
PRIVATE = ("org/secret", "ft:shared:p1x")  # tenant a, project p1


@dataclass
class World:
    ctx: ServiceContext
    keys: dict[Identity, str]
    http: TestClient  # type: ignore[type-arg]
    public: grpc.aio.Channel
    worker: grpc.aio.Channel
    pb2: Any
    public_port: int

    def public_stub(self) -> Any:
        return self.pb2.grpc.ModelsServiceStub(self.public)

    def worker_stub(self) -> Any:
        return self.pb2.grpc.ModelsWorkerServiceStub(self.worker)

    def md(self, who: Identity, **headers: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"), *headers.items())


async def _seed(ctx: ServiceContext) -> None:
    """Tenant a: a global "shared" model, p1's project-scoped "org/secret" and fine-tuned "ft:shared:p1x".
    Tenant b: its own global "shared" (the same id, no clash), stored in its own area."""
    models, worker = ModelsService(ctx), WorkerService(ctx)
    for w in (A_WORKER, B_WORKER):
        path = f"tenants/{w.tenant_id}/models/base-models/shared"
        req = pb.CreateBaseModelRequest(
            id="shared", path=path, formats=[pb.ModelFormat.HUGGING_FACE], source_repository=HF
        )
        await worker.create_base_model(w, req)
    await models.create_model(
        A_P1, pb.CreateModelRequest(id="org/secret", source_repository=HF, is_project_scoped=True)
    )
    await models.create_model(
        A_P1,
        pb.CreateModelRequest(
            is_fine_tuned_model=True,
            base_model_id="shared",
            suffix="p1x",
            source_repository=OBJECT_STORE,
            model_file_location="s3://jobs/p1x",
        ),
    )
    claim = await worker.acquire_unloaded_model(A_WORKER, pb.AcquireUnloadedModelRequest(holder="a-loader"))
    await worker.update_model_loading_status(
        A_WORKER,
        pb.UpdateModelLoadingStatusRequest(
            id=claim.model_id, attempt=claim.attempt, success=pb.UpdateModelLoadingStatusRequestSuccess()
        ),
    )
    await worker.create_hf_model_repo(A_WORKER, pb.CreateHfModelRepoRequest(name="org/repo", project_id="p1"))


@pytest.fixture
async def world(ctx: ServiceContext, grpcio_pb: Any) -> AsyncIterator[World]:
    ctx = replace(ctx, auth_enabled=True)
    service = KeyService(ctx.db)
    keys = {}
    for who in (A_P1, A_P2, B_P1, A_WORKER, B_WORKER):
        scope = KeyScope(who.tenant_id, who.role, who.organization_id, who.project_id)
        keys[who] = (await service.create(scope))[0]
    for role in (Role.READER, Role.WRITER):
        keys[replace(A_P1, role=role)] = (await service.create(KeyScope("tenant-a", role, "org-a", "p1")))[0]
    await _seed(ctx)
    auth = Authenticator(ctx.db, enabled=True)
    http = TestClient(TestServer(RestApi(ModelsService(ctx), Health(ctx).ready, auth).app()))
    await http.start_server()
    inflight = InFlight()
    servers = [
        build_server(ModelsServicer(ModelsService(ctx), inflight, auth), with_health=True),
        build_server(WorkerServicer(WorkerService(ctx), inflight, auth), with_health=False),
    ]
    ports = [free_port(), free_port()]
    for server, port in zip(servers, ports, strict=True):
        await server.start("127.0.0.1", port)
    public = grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}")
    worker = grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}")
    yield World(ctx, keys, http, public, worker, grpcio_pb, ports[0])
    await public.close()
    await worker.close()
    await http.close()
    for server in servers:
        server.close()
        await server.wait_closed()


class Public:
    """The public API over one transport, answering (gRPC status, JSON-ish body) whatever the transport."""

    def __init__(self, world: World, transport: str) -> None:
        self.w = world
        self.transport = transport

    async def call(self, who: Identity | None, method: str, model_id: str = "", **fields: Any) -> tuple[Status, Any]:
        if self.transport == "rest":
            return await self._rest(who, method, model_id, fields)
        return await self._grpc(who, method, model_id, fields)

    async def _rest(
        self, who: Identity | None, method: str, model_id: str, fields: dict[str, Any]
    ) -> tuple[Status, Any]:
        headers = {"Authorization": f"Bearer {self.w.keys[who]}"} if who else {}
        headers.update(fields.pop("headers", {}))
        route = {
            "list": ("GET", "/v1/models"),
            "get": ("GET", f"/v1/models/{model_id}"),
            "create": ("POST", "/v1/models"),
            "delete": ("DELETE", f"/v1/models/{model_id}"),
            "update": ("PATCH", f"/v1/models/{model_id}"),
            "activate": ("POST", f"/v1/models/{model_id}:activate"),
            "deactivate": ("POST", f"/v1/models/{model_id}:deactivate"),
        }[method]
        if route[0] == "GET":
            query = {k: json.dumps(v) if isinstance(v, bool) else v for k, v in fields.items()}
            r = await self.w.http.request(route[0], route[1], headers=headers, params=query)
        else:
            r = await self.w.http.request(route[0], route[1], headers=headers, json=fields)
        body = await r.json()
        return (Status.OK if r.status == 200 else Status(body["code"])), body

    async def _grpc(
        self, who: Identity | None, method: str, model_id: str, fields: dict[str, Any]
    ) -> tuple[Status, Any]:
        pb2 = self.w.pb2.pb2
        headers = fields.pop("headers", {})
        md = self.w.md(who, **{k.lower(): v for k, v in headers.items()}) if who else ()
        stub = self.w.public_stub()
        if method == "update":
            mask = fields.pop("update_mask")
            request = pb2.UpdateModelRequest(
                model=pb2.Model(
                    id=model_id,
                    config=pb2.ModelConfig(
                        runtime_config=pb2.ModelConfig.RuntimeConfig(
                            replicas=fields["model"]["config"]["runtime_config"]["replicas"]
                        )
                    ),
                ),
                update_mask={"paths": mask.split(",")},
            )
            rpc = stub.UpdateModel
        else:
            name = {
                "list": "ListModels",
                "get": "GetModel",
                "create": "CreateModel",
                "delete": "DeleteModel",
                "activate": "ActivateModel",
                "deactivate": "DeactivateModel",
            }[method]
            rpc = getattr(stub, name)
            if model_id:
                fields["id"] = model_id
            request = getattr(pb2, f"{name}Request")(**fields)
        try:
            reply = await rpc(request, metadata=md)
        except grpc.aio.AioRpcError as e:
            return Status(e.code().value[0]), {"message": e.details()}
        from google.protobuf.json_format import MessageToDict

        return Status.OK, MessageToDict(reply, preserving_proto_field_name=True)


TRANSPORTS = ["rest", "grpc"]
UPDATE = {"model": {"config": {"runtime_config": {"replicas": 3}}}, "update_mask": "config.runtime_config.replicas"}


def _ids(body: Any) -> list[str]:
    return sorted(m["id"] for m in body.get("data", []))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_public_call_reaches_another_tenants_or_projects_models(world: World, transport: str) -> None:
    api = Public(world, transport)
    for outsider in (B_P1, A_P2):
        status, body = await api.call(outsider, "list", include_loading_models=True)
        assert status == Status.OK and _ids(body) == ["shared"]
        assert int(body["total_items"]) == 1  # counts nothing it cannot see
        for model_id in PRIVATE:
            for method, fields in (
                ("get", {}),
                ("delete", {}),
                ("update", dict(UPDATE)),
                ("activate", {}),
                ("deactivate", {}),
            ):
                status, body = await api.call(outsider, method, model_id, **fields)
                assert status == Status.NOT_FOUND, (outsider, method, model_id, body)
    # The owner still has both, untouched.
    status, body = await api.call(A_P1, "list", include_loading_models=True)
    assert _ids(body) == ["ft:shared:p1x", "org/secret", "shared"] and int(body["total_items"]) == 3
    for m in body["data"]:
        assert m["activation_status"] == "ACTIVATION_STATUS_INACTIVE"
        assert m.get("config", {}).get("runtime_config", {}).get("replicas", 1) == 1

    # Tenant b's "shared" is its own: activating it leaves tenant a's alone.
    assert (await api.call(B_P1, "activate", "shared"))[0] == Status.OK
    _, mine = await api.call(A_P1, "get", "shared")
    assert mine["activation_status"] == "ACTIVATION_STATUS_INACTIVE"
    # And the same id may be created in both tenants.
    status, body = await api.call(
        B_P1,
        "create",
        id="org/secret",
        source_repository="SOURCE_REPOSITORY_HUGGING_FACE" if transport == "rest" else 1,
        is_project_scoped=True,
    )
    assert status == Status.OK, body
    assert _ids((await api.call(B_P1, "list", include_loading_models=True))[1]) == ["org/secret", "shared"]
    assert len(_ids((await api.call(A_P1, "list", include_loading_models=True))[1])) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_roles_and_headers(world: World, transport: str) -> None:
    api = Public(world, transport)
    reader, writer = replace(A_P1, role=Role.READER), replace(A_P1, role=Role.WRITER)
    assert (await api.call(reader, "get", "ft:shared:p1x"))[0] == Status.OK
    status, body = await api.call(reader, "activate", "ft:shared:p1x")
    assert status == Status.PERMISSION_DENIED and "writer role" in body["message"]
    assert (await api.call(writer, "delete", "shared"))[0] == Status.PERMISSION_DENIED  # global: admin only
    assert (await api.call(writer, "activate", "shared"))[0] == Status.OK
    # A header cannot move a key into another project.
    status, body = await api.call(A_P2, "list", headers={"OpenAI-Project": "p1"})
    assert status == Status.PERMISSION_DENIED and "'p2'" in body["message"]
    assert (await api.call(None, "list"))[0] == Status.UNAUTHENTICATED
    assert (await api.call(A_WORKER, "list"))[0] == Status.PERMISSION_DENIED


async def test_rest_routes_but_health_need_a_key(world: World) -> None:
    for path in ("/healthz", "/readyz"):
        assert (await world.http.get(path)).status == 200
    for path in ("/openapi.json", "/v1/models", "/no/such/route"):
        r = await world.http.get(path)
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await world.http.get("/openapi.json", headers={"Authorization": f"Bearer {world.keys[A_P1]}"})
    assert r.status == 200
    doc = await r.json()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/healthz"]["get"]["security"] == [] and "security" not in doc["paths"]["/v1/models"]["get"]


async def _grpc_status(call: Any) -> Status:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return Status(e.code().value[0])
    return Status.OK


async def test_grpc_ports_open_only_health_without_a_key(world: World) -> None:
    pb2 = world.pb2.pb2
    async with Channel("127.0.0.1", world.public_port) as ch:
        assert (await HealthStub(ch).Check(HealthCheckRequest())).status == HealthCheckResponse.SERVING

        async def reflect(metadata: Any) -> Status:
            try:
                async with ServerReflectionStub(ch).ServerReflectionInfo.open(metadata=metadata) as stream:
                    await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
                    await stream.recv_message()
            except GRPCError as e:
                return e.status
            return Status.OK

        assert await reflect(None) == Status.UNAUTHENTICATED
        assert await reflect(dict(world.md(A_P1))) == Status.OK
    worker = world.worker_stub()
    get_config = pb2.GetStorageConfigRequest()
    assert await _grpc_status(worker.GetStorageConfig(get_config)) == Status.UNAUTHENTICATED
    assert await _grpc_status(worker.GetStorageConfig(get_config, metadata=world.md(A_P1))) == Status.PERMISSION_DENIED
    bad = (("authorization", "Bearer mmk_000000000000_" + "A" * 43),)
    assert await _grpc_status(worker.GetStorageConfig(get_config, metadata=bad)) == Status.UNAUTHENTICATED


async def test_a_worker_key_stays_in_its_tenant(world: World) -> None:
    pb2 = world.pb2.pb2
    worker = world.worker_stub()
    b = world.md(B_WORKER)
    a = world.md(A_WORKER)
    await worker.CreateStorageConfig(pb2.CreateStorageConfigRequest(path_prefix="models"), metadata=a)

    async def as_b(rpc: str, request: Any) -> Status:
        return await _grpc_status(getattr(worker, rpc)(request, metadata=b))

    # Tenant a's requested "org/secret" is not b's to claim; a's own worker gets it.
    claim = await worker.AcquireUnloadedBaseModel(pb2.AcquireUnloadedBaseModelRequest(holder="b"), metadata=b)
    assert claim.base_model_id == ""
    claim = await worker.AcquireUnloadedBaseModel(pb2.AcquireUnloadedBaseModelRequest(holder="a"), metadata=a)
    assert (claim.base_model_id, claim.project_id) == ("org/secret", "p1")

    refused = {
        "UpdateBaseModelLoadingStatus": pb2.UpdateBaseModelLoadingStatusRequest(
            id="org/secret", project_id="p1", attempt=claim.attempt, failure={"reason": "forged"}
        ),
        "GetBaseModelPath": pb2.GetBaseModelPathRequest(id="org/secret", project_id="p1"),
        "GetModelPath": pb2.GetModelPathRequest(id="ft:shared:p1x"),
        "GetModelAttributes": pb2.GetModelAttributesRequest(id="ft:shared:p1x"),
        "GetModel": pb2.GetModelRequest(id="ft:shared:p1x"),
        "PublishModel": pb2.PublishModelRequest(id="ft:shared:p1x"),
        "GetHFModelRepo": pb2.GetHFModelRepoRequest(name="org/repo", project_id="p1"),
        "GetStorageConfig": pb2.GetStorageConfigRequest(),
    }
    for rpc, request in refused.items():
        assert await as_b(rpc, request) == Status.NOT_FOUND, rpc
    listed = await worker.ListModels(pb2.ListModelsRequest(), metadata=b)
    assert [m.id for m in listed.data] == ["shared"]

    # A fine-tuned model requested in tenant a is claimed and reported only by a's worker.
    await world.public_stub().CreateModel(
        pb2.CreateModelRequest(
            is_fine_tuned_model=True,
            base_model_id="shared",
            suffix="p1y",
            source_repository=pb2.SOURCE_REPOSITORY_OBJECT_STORE,
            model_file_location="s3://jobs/p1y",
        ),
        metadata=world.md(A_P1),
    )
    assert (await worker.AcquireUnloadedModel(pb2.AcquireUnloadedModelRequest(holder="b"), metadata=b)).model_id == ""
    ft = await worker.AcquireUnloadedModel(pb2.AcquireUnloadedModelRequest(holder="a"), metadata=a)
    assert ft.model_id == "ft:shared:p1y"
    forged = pb2.UpdateModelLoadingStatusRequest(id=ft.model_id, attempt=ft.attempt, failure={"reason": "forged"})
    assert await as_b("UpdateModelLoadingStatus", forged) == Status.NOT_FOUND

    # Per-tenant records: b making its own leaves a's as they were.
    await worker.CreateStorageConfig(pb2.CreateStorageConfigRequest(path_prefix="b-models"), metadata=b)
    assert (
        await worker.GetStorageConfig(pb2.GetStorageConfigRequest(), metadata=a)
    ).path_prefix == "tenants/tenant-a/models"
    assert (
        await worker.GetStorageConfig(pb2.GetStorageConfigRequest(), metadata=b)
    ).path_prefix == "tenants/tenant-b/b-models"
    await worker.CreateHFModelRepo(pb2.CreateHFModelRepoRequest(name="org/repo", project_id="p1"), metadata=b)
    a_repo = pb2.GetHFModelRepoRequest(name="org/repo", project_id="p1")
    assert (await worker.GetHFModelRepo(a_repo, metadata=a)).name == "org/repo"

    # Projects and paths are checked against the tenant.
    register = pb2.RegisterModelRequest(base_model="shared", suffix="x", organization_id="org-a", project_id="p2")
    assert await as_b("RegisterModel", register) == Status.INVALID_ARGUMENT  # p2 is tenant a's project
    a_ft_path = (await worker.GetModelPath(pb2.GetModelPathRequest(id="ft:shared:p1x"), metadata=a)).path
    for path in (a_ft_path, a_ft_path + "/inner", a_ft_path.rsplit("/", 1)[0]):
        hijack = pb2.CreateBaseModelRequest(id="mine", path=path, formats=[pb2.MODEL_FORMAT_HUGGING_FACE])
        assert await as_b("CreateBaseModel", hijack) == Status.INVALID_ARGUMENT, path

    # Nothing of a's changed.
    a_model = await world.public_stub().GetModel(
        pb2.GetModelRequest(id="org/secret", include_loading_model=True), metadata=world.md(A_P1)
    )
    assert a_model.loading_status == pb2.MODEL_LOADING_STATUS_LOADING and not a_model.loading_failure_reason
