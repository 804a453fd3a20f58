"""Both gRPC ports over real HTTP/2, driven by Google's grpcio stubs generated from the same .proto."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest

from model_manager.api.grpc import InFlight, ModelsServicer, WorkerServicer, build_server
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from model_manager.service.worker import WorkerService
from tests.conftest import free_port
from tests.helpers import no_auth

MODELS = "llmariner.models.server.v1.ModelsService"
WORKER = "llmariner.models.server.v1.ModelsWorkerService"


@pytest.fixture
async def ports(ctx: ServiceContext) -> AsyncIterator[tuple[int, int]]:
    inflight = InFlight()
    public = build_server(ModelsServicer(ModelsService(ctx), inflight, no_auth(ctx)), with_health=True)
    worker = build_server(WorkerServicer(WorkerService(ctx), inflight, no_auth(ctx)), with_health=False)
    ports = (free_port(), free_port())
    await public.start("127.0.0.1", ports[0])
    await worker.start("127.0.0.1", ports[1])
    yield ports
    for s in (public, worker):
        s.close()
        await s.wait_closed()


@pytest.fixture
async def stubs(ports: tuple[int, int], grpcio_pb: Any) -> AsyncIterator[tuple[Any, Any]]:
    public = grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}")
    worker = grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}")
    yield grpcio_pb.grpc.ModelsServiceStub(public), grpcio_pb.grpc.ModelsWorkerServiceStub(worker)
    await public.close()
    await worker.close()


async def test_a_model_through_both_services(stubs: tuple[Any, Any], grpcio_pb: Any) -> None:
    pb2 = grpcio_pb.pb2
    models, worker = stubs
    created = await models.CreateModel(
        pb2.CreateModelRequest(id="org/name@main", source_repository=pb2.SOURCE_REPOSITORY_HUGGING_FACE)
    )
    assert (created.id, created.loading_status) == ("org/name", pb2.MODEL_LOADING_STATUS_REQUESTED)
    assert created.config.runtime_config.replicas == 1
    claim = await worker.AcquireUnloadedBaseModel(pb2.AcquireUnloadedBaseModelRequest())
    assert (claim.base_model_id, claim.attempt, claim.revision) == ("org/name", 1, "main")
    await worker.CreateBaseModel(
        pb2.CreateBaseModelRequest(
            id="org-name",
            path="models/base-models/org/name",
            formats=[pb2.MODEL_FORMAT_HUGGING_FACE],
            revision="abc123",
        )
    )
    await worker.UpdateBaseModelLoadingStatus(
        pb2.UpdateBaseModelLoadingStatusRequest(id="org/name", success={}, attempt=claim.attempt)
    )
    listed = await models.ListModels(pb2.ListModelsRequest())
    assert [m.id for m in listed.data] == ["org-name"]
    assert listed.data[0].revision == "abc123" and not listed.has_more
    await models.ActivateModel(pb2.ActivateModelRequest(id="org-name"))
    got = await models.GetModel(pb2.GetModelRequest(id="org-name"))
    assert got.activation_status == pb2.ACTIVATION_STATUS_ACTIVE
    path = await worker.GetBaseModelPath(pb2.GetBaseModelPathRequest(id="org-name"))
    assert path.path == "models/base-models/org/name"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda m, pb2: m.GetModel(pb2.GetModelRequest(id="missing")), grpc.StatusCode.NOT_FOUND),
        (lambda m, pb2: m.ListModels(pb2.ListModelsRequest(limit=-1)), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda m, pb2: m.DeleteModel(pb2.DeleteModelRequest(id="")), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda m, pb2: m.UpdateModel(pb2.UpdateModelRequest(model={"id": "x"})), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_errors_become_grpc_status_codes(stubs: tuple[Any, Any], grpcio_pb: Any, call: Any, code: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(stubs[0], grpcio_pb.pb2)
    assert info.value.code() == code
    assert info.value.details()


async def test_already_exists_and_failed_precondition(stubs: tuple[Any, Any], grpcio_pb: Any) -> None:
    pb2 = grpcio_pb.pb2
    models, worker = stubs
    req = pb2.CreateModelRequest(id="gemma:2b", source_repository=pb2.SOURCE_REPOSITORY_OLLAMA)
    await models.CreateModel(req)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await models.CreateModel(req)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await worker.UpdateBaseModelLoadingStatus(pb2.UpdateBaseModelLoadingStatusRequest(id="gemma:2b"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_health_and_reflection(ports: tuple[int, int]) -> None:
    async with Channel("127.0.0.1", ports[0]) as ch:
        health = await HealthStub(ch).Check(HealthCheckRequest())
        assert health.status == HealthCheckResponse.SERVING
        names = await _services(ch)
        assert MODELS in names and "grpc.health.v1.Health" in names
        async with ServerReflectionStub(ch).ServerReflectionInfo.open() as stream:
            await stream.send_message(ServerReflectionRequest(file_containing_symbol=MODELS), end=True)
            reply = await stream.recv_message()
        assert reply is not None and reply.file_descriptor_response.file_descriptor_proto
    async with Channel("127.0.0.1", ports[1]) as ch:
        assert WORKER in await _services(ch)


async def _services(ch: Channel) -> list[str]:
    async with ServerReflectionStub(ch).ServerReflectionInfo.open() as stream:
        await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
        reply = await stream.recv_message()
    assert reply is not None
    return [s.name for s in reply.list_services_response.service]


def _methods(grpcio_pb: Any) -> list[tuple[str, str, bool]]:
    """(service, method, whether field 1 of its request is a string) for every method of both services, from the
    descriptors an independent client has."""
    out = []
    for service in grpcio_pb.pb2.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            first = m.input_type.fields_by_number.get(1)
            out.append((service.full_name, m.name, first is not None and first.type == first.TYPE_STRING))
    return out


async def _raw_call(port: int, path: str, body: bytes) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 512 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            await call(body, timeout=30)
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK


async def test_hostile_protobuf_to_every_method_is_refused_with_a_reason(
    ports: tuple[int, int], grpcio_pb: Any
) -> None:
    rng = random.Random(7)
    truncated = b"\x0a\x10abc"  # field 1, length 16, then only three bytes
    wrong_wire_type = b"\x0d\x00\x00\x00\x00"  # field 1 (a string everywhere) sent as a fixed32
    bad_utf8 = b"\x0a\x02\xff\xfe"
    methods = _methods(grpcio_pb)
    assert len(methods) >= 20
    for service, method, has_string_field_1 in methods:
        port = ports[0] if service == MODELS else ports[1]
        path = f"/{service}/{method}"
        for body in (truncated, wrong_wire_type, bad_utf8):
            code = await _raw_call(port, path, body)
            if has_string_field_1:
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, body, code)
            else:  # a number sent as fixed32 (refused), or an unknown field (accepted, as protobuf's forward
                # compatibility wants), but never a crash
                assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, body, code)
        for _ in range(5):
            code = await _raw_call(port, path, rng.randbytes(rng.randint(1, 64)))
            assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, code)


async def test_oversized_requests_are_resource_exhausted(ports: tuple[int, int]) -> None:
    big = b"\x0a" + _varint(8 * 1024 * 1024) + b"a" * (8 * 1024 * 1024)
    for port, path in ((ports[0], f"/{MODELS}/CreateModel"), (ports[1], f"/{WORKER}/CreateBaseModel")):
        assert await _raw_call(port, path, big) == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_nul_in_worker_fields_is_invalid_argument_naming_the_field(
    stubs: tuple[Any, Any], grpcio_pb: Any
) -> None:
    pb2 = grpcio_pb.pb2
    _, worker = stubs
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await worker.AcquireUnloadedBaseModel(pb2.AcquireUnloadedBaseModelRequest(holder="a\x00b"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holder" in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await worker.CreateBaseModel(pb2.CreateBaseModelRequest(id="m", path="models/\x00", formats=[1]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "path" in (raised.value.details() or "")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def test_the_grpc_request_limit_is_configurable(ctx: ServiceContext) -> None:
    server = build_server(
        ModelsServicer(ModelsService(ctx), InFlight(), no_auth(ctx)), with_health=True, max_request_bytes=1024
    )
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        small = b"\x0a\x03a/b"
        big = b"\x0a" + _varint(2000) + b"a" * 2000
        assert await _raw_call(port, f"/{MODELS}/GetModel", small) == grpc.StatusCode.NOT_FOUND
        assert await _raw_call(port, f"/{MODELS}/GetModel", big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.close()
        await server.wait_closed()


# A value of each wire type: varint, 64-bit, length-delimited, 32-bit.
_VALUES = {0: b"\x01", 1: b"\x00" * 8, 2: b"\x02\xc3\x28", 5: b"\x00" * 4}


def _expected_wire_types(field: Any) -> set[int]:
    if field.type in (field.TYPE_STRING, field.TYPE_BYTES, field.TYPE_MESSAGE):
        return {2}
    fixed = {field.TYPE_DOUBLE: 1, field.TYPE_FIXED64: 1, field.TYPE_SFIXED64: 1, field.TYPE_FLOAT: 5}
    wire = fixed.get(field.type, 5 if field.type in (field.TYPE_FIXED32, field.TYPE_SFIXED32) else 0)
    return {wire, 2} if field.is_repeated else {wire}  # repeated numbers may come packed


def _wrong_wire_bodies(message: Any, depth: int = 0) -> list[tuple[str, bytes]]:
    """(dotted field name, a body sending that field with a wire type it cannot have) for every field of `message`
    and, one level down, of the messages it holds."""
    out = []
    for field in message.fields:
        for wire, value in _VALUES.items():
            if wire not in _expected_wire_types(field):
                out.append((field.name, _varint(field.number << 3 | wire) + value))
        if field.type == field.TYPE_MESSAGE and depth < 2 and not field.message_type.full_name.startswith("google."):
            outer = f"{field.name}[0]" if field.is_repeated else field.name
            for name, inner in _wrong_wire_bodies(field.message_type, depth + 1):
                out.append((f"{outer}.{name}", _varint(field.number << 3 | 2) + _varint(len(inner)) + inner))
    return out


async def test_every_field_sent_with_a_wrong_wire_type_is_invalid_argument_naming_it(
    ports: tuple[int, int], grpcio_pb: Any
) -> None:
    """A bool sent as bytes (`0a 02 c3 28` to ListModels) once reached the response cache as a list: UNKNOWN."""
    checked = 0
    for service in grpcio_pb.pb2.DESCRIPTOR.services_by_name.values():
        port = ports[0] if service.full_name == MODELS else ports[1]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method in service.methods:
                call = channel.unary_unary(f"/{service.full_name}/{method.name}")
                for name, body in _wrong_wire_bodies(method.input_type):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await call(body, timeout=30)
                    details = raised.value.details() or ""
                    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, name, details)
                    assert f"field {name} " in details, (method.name, name, details)
                    checked += 1
    assert checked > 300


async def test_the_file_selection_goes_from_the_request_to_the_claim(stubs: tuple[Any, Any], grpcio_pb: Any) -> None:
    pb2 = grpcio_pb.pb2
    models, worker = stubs
    await models.CreateModel(
        pb2.CreateModelRequest(
            id="org/name",
            source_repository=pb2.SOURCE_REPOSITORY_HUGGING_FACE,
            include=["*.json", "model-*.safetensors"],
            exclude=["consolidated*"],
            allow_pickle=True,
        )
    )
    claim = await worker.AcquireUnloadedBaseModel(pb2.AcquireUnloadedBaseModelRequest())
    assert (list(claim.include), list(claim.exclude), claim.allow_pickle) == (
        ["*.json", "model-*.safetensors"],
        ["consolidated*"],
        True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await models.CreateModel(
            pb2.CreateModelRequest(id="gemma:2b", source_repository=pb2.SOURCE_REPOSITORY_OLLAMA, exclude=["*"])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "an Ollama model is stored whole" in (info.value.details() or "")
