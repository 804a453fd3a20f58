"""ModelsWorkerService rules other than loading status, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re

import pytest

from model_manager.api.grpc import InFlight, WorkerServicer
from model_manager.api.wire import PROTO
from model_manager.core.errors import AlreadyExists, InvalidArgument, NotFound
from model_manager.proto.llmariner.models.server import v1 as pb
from tests.helpers import HF, OTHER_PROJECT, WHO, WORKER, Api, no_auth


async def test_storage_config_is_one_per_tenant(api: Api) -> None:
    with pytest.raises(NotFound, match="storage config"):
        await api.worker.get_storage_config(WORKER, pb.GetStorageConfigRequest())
    with pytest.raises(InvalidArgument, match="path_prefix is required"):
        await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest())
    await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix="p"))
    assert (await api.worker.get_storage_config(WORKER, pb.GetStorageConfigRequest())).path_prefix == "p"
    with pytest.raises(AlreadyExists):
        await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix="q"))


async def test_worker_get_includes_loading_models(api: Api) -> None:
    await api.request_base("org/name")
    got = await api.worker.get_model(WORKER, pb.GetModelRequest(id="org/name"))
    assert got.loading_status == pb.ModelLoadingStatus.REQUESTED


async def test_worker_list_is_loaded_base_then_published_fine_tuned_unpaginated(api: Api) -> None:
    for b in ["b2", "b1"]:
        await api.loaded_base(b)
    await api.loaded_base("scoped", project_id="p1")
    await api.loaded_fine_tuned("b1", "x")
    await api.loaded_fine_tuned("b1", "y", who=OTHER_PROJECT)
    await api.request_base("org/loading")
    resp = pb.ListModelsResponse.parse(
        await api.worker.list_models_encoded(WORKER, pb.ListModelsRequest(limit=1), PROTO)
    )
    assert [m.id for m in resp.data] == ["b1", "b2", "scoped", "ft:b1:x", "ft:b1:y"]
    assert not resp.has_more


def _register(**kw: object) -> pb.RegisterModelRequest:
    base = {"base_model": "org/base", "organization_id": "org1", "project_id": "default"}
    return pb.RegisterModelRequest(**{**base, **kw})  # type: ignore[arg-type]


async def test_register_generates_a_unique_id_and_default_path(api: Api) -> None:
    resp = await api.worker.register_model(WORKER, _register(suffix="run", adapter=pb.AdapterType.LORA))
    assert re.fullmatch(r"ft:org-base:run-[A-Za-z0-9_-]{10}", resp.id)
    assert resp.path == f"models/{WHO.tenant_id}/{resp.id}"
    other = await api.worker.register_model(WORKER, _register(suffix="run"))
    assert other.id != resp.id
    # Registered models are unpublished and LOADING: invisible to the public API until published.
    with pytest.raises(NotFound):
        await api.get(resp.id)
    with pytest.raises(NotFound):
        await api.worker.get_model_path(WORKER, pb.GetModelPathRequest(id=resp.id))
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=resp.id))
    got = await api.get(resp.id, loading=False)
    assert got.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert (await api.worker.get_model_path(WORKER, pb.GetModelPathRequest(id=resp.id))).path == resp.path
    attrs = await api.worker.get_model_attributes(WORKER, pb.GetModelAttributesRequest(id=resp.id))
    assert (attrs.base_model, attrs.adapter, attrs.path) == ("org/base", pb.AdapterType.LORA, resp.path)


async def test_register_with_given_id_and_path(api: Api) -> None:
    resp = await api.worker.register_model(WORKER, _register(id="ft:mine", path="models/custom/path"))
    assert (resp.id, resp.path) == ("ft:mine", "models/custom/path")
    with pytest.raises(AlreadyExists, match="ft:mine"):
        await api.worker.register_model(WORKER, _register(id="ft:mine"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"suffix": ""}, "suffix is required"),
        ({"suffix": "s", "base_model": ""}, "base_model is required"),
        ({"suffix": "s", "organization_id": ""}, "organization_id is required"),
        ({"suffix": "s", "project_id": ""}, "project_id is required"),
    ],
)
async def test_register_requires_fields(api: Api, kw: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await api.worker.register_model(WORKER, _register(**kw))


async def test_publish_missing_model_is_not_found(api: Api) -> None:
    with pytest.raises(NotFound):
        await api.worker.publish_model(WORKER, pb.PublishModelRequest(id="ft:none"))
    with pytest.raises(NotFound):
        await api.worker.get_model_attributes(WORKER, pb.GetModelAttributesRequest(id="ft:none"))


async def test_create_base_model_rules(api: Api) -> None:
    with pytest.raises(InvalidArgument, match="path is required"):
        await api.worker.create_base_model(WORKER, pb.CreateBaseModelRequest(id="m"))
    # Empty formats mean GGUF, which needs the GGUF file's path.
    with pytest.raises(InvalidArgument, match="gguf_model_path"):
        await api.worker.create_base_model(WORKER, pb.CreateBaseModelRequest(id="m", path="models/p"))
    created = await api.worker.create_base_model(
        WORKER,
        pb.CreateBaseModelRequest(id="m", path="models/p", gguf_model_path="models/p/m.gguf", source_repository=HF),
    )
    assert (created.id, created.object) == ("m", "basemodel")
    got = await api.get("m", loading=False)
    assert got.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert got.activation_status == pb.ActivationStatus.INACTIVE
    assert got.formats == [pb.ModelFormat.GGUF]
    with pytest.raises(AlreadyExists):
        await api.loaded_base("m")


async def test_create_base_model_completes_a_loading_row_of_the_same_id(api: Api) -> None:
    await api.request_base("gemma:2b", pb.SourceRepository.OLLAMA)
    claim = await api.acquire_base()
    await api.worker.create_base_model(
        WORKER,
        pb.CreateBaseModelRequest(
            id="gemma:2b",
            path="models/base-models/gemma-2b",
            formats=[pb.ModelFormat.OLLAMA],
            revision="sha256:abc",
            loading_model_id="gemma:2b",
            attempt=claim.attempt,
        ),
    )
    await api.base_status("gemma:2b", success=pb.UpdateBaseModelLoadingStatusRequestSuccess(), attempt=claim.attempt)
    got = await api.get("gemma:2b", loading=False)
    assert (got.loading_status, got.formats, got.revision) == (
        pb.ModelLoadingStatus.SUCCEEDED,
        [pb.ModelFormat.OLLAMA],
        "sha256:abc",
    )


async def test_base_model_path(api: Api) -> None:
    await api.request_base("org/loading")
    with pytest.raises(NotFound):
        await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="org/loading"))
    await api.worker.create_base_model(
        WORKER, pb.CreateBaseModelRequest(id="g", path="models/p", gguf_model_path="models/p/g.gguf", formats=[])
    )
    resp = await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="g"))
    assert (resp.path, resp.gguf_model_path, resp.formats) == ("models/p", "models/p/g.gguf", [pb.ModelFormat.GGUF])


async def test_project_scoped_base_model_path_wins_over_global(api: Api) -> None:
    await api.loaded_base("m", path="models/base-models/m-global")
    await api.loaded_base("m", path="models/base-models/m-scoped", project_id="p1")
    req = pb.GetBaseModelPathRequest(id="m", project_id="p1")
    assert (await api.worker.get_base_model_path(WORKER, req)).path == "models/base-models/m-scoped"
    assert (
        await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="m"))
    ).path == "models/base-models/m-global"


async def test_hf_model_repo_records(api: Api) -> None:
    with pytest.raises(NotFound, match="org/name"):
        await api.worker.get_hf_model_repo(WORKER, pb.GetHfModelRepoRequest(name="org/name"))
    await api.worker.create_hf_model_repo(WORKER, pb.CreateHfModelRepoRequest(name="org/name"))
    assert (await api.worker.get_hf_model_repo(WORKER, pb.GetHfModelRepoRequest(name="org/name"))).name == "org/name"
    with pytest.raises(AlreadyExists):
        await api.worker.create_hf_model_repo(WORKER, pb.CreateHfModelRepoRequest(name="org/name"))


async def test_loaded_files_are_recorded_and_returned(api: Api) -> None:
    files = [
        pb.ModelFile(path="config.json", size=2, sha256="ab" * 32),
        pb.ModelFile(path="w.gguf", size=9, sha256="cd" * 32),
    ]
    await api.worker.create_base_model(
        WORKER, pb.CreateBaseModelRequest(id="m", path="models/p", gguf_model_path="models/p/w.gguf", files=files)
    )
    assert (await api.get("m")).files == files
    resp = await api.worker.register_model(WORKER, _register(suffix="s"))
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=resp.id, files=files[:1]))
    assert (await api.get(resp.id)).files == files[:1]


async def test_an_in_process_call_whose_caller_is_cancelled_still_runs_to_its_end(api: Api) -> None:
    """The loader of role "all" calls the worker servicer directly. A loader that stops mid-report (a heartbeat
    cancelled when its transfer ends) must not cancel the transaction half-way: on SQLite that connection would
    keep the write lock until garbage collection, and every other writer would wait for it."""
    await api.request_base("org/name")
    claim = await api.acquire_base()
    inflight = InFlight()
    servicer = WorkerServicer(api.worker, inflight, no_auth(api.ctx))
    report = pb.UpdateBaseModelLoadingStatusRequest(id="org/name", attempt=claim.attempt, status_message="halfway")
    call = asyncio.ensure_future(servicer.update_base_model_loading_status(report))
    await asyncio.sleep(0)  # started: inside the service, waiting on the database
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert inflight.count == 1  # still running, and counted so that shutdown waits for it
    assert await inflight.wait_idle(10)
    assert (await api.get("org/name")).loading_status_message == "halfway"
    # and the database is free for the next writer at once
    async with asyncio.timeout(5):
        await api.base_status("org/name", attempt=claim.attempt, status_message="next")
