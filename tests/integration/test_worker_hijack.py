"""The worker API cannot be used to hijack a model: paths stay inside the bucket and the tenant's prefix, and a
model loading under a lease is changed only by the claim that holds it."""

from __future__ import annotations

import pytest

from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound
from model_manager.proto.llmariner.models.server import v1 as pb
from tests.helpers import HF, WORKER, Api

HIJACK_PATHS = [
    ("s3://attacker-bucket/backdoored-weights", "not a URL"),
    ("../victim", "'..' segments"),
    ("models/../victim", "'..' segments"),
    ("/etc/passwd", "relative path"),
    ("models//x", "empty"),
    ("elsewhere/weights", "storage prefix 'models/'"),
    ("models", "storage prefix 'models/'"),
]


def _base(path: str, **kw: object) -> pb.CreateBaseModelRequest:
    return pb.CreateBaseModelRequest(id="m", path=path, formats=[pb.ModelFormat.HUGGING_FACE], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "problem"), HIJACK_PATHS)
async def test_create_base_model_paths_stay_in_the_tenants_prefix(api: Api, path: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        await api.worker.create_base_model(WORKER, _base(path))
    gguf = pb.CreateBaseModelRequest(id="m", path="models/m", gguf_model_path=path, formats=[pb.ModelFormat.GGUF])
    with pytest.raises(InvalidArgument, match="gguf_model_path"):
        await api.worker.create_base_model(WORKER, gguf)
    assert (await api.list(include_loading_models=True)).data == []


@pytest.mark.parametrize(("path", "problem"), HIJACK_PATHS)
async def test_register_model_paths_stay_in_the_tenants_prefix(api: Api, path: str, problem: str) -> None:
    await api.loaded_base("base")
    req = pb.RegisterModelRequest(base_model="base", suffix="x", organization_id="o", project_id="p", path=path)
    with pytest.raises(InvalidArgument, match=problem):
        await api.worker.register_model(WORKER, req)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../x", "a\\b", "s3://b/k"])
async def test_file_names_cannot_climb_out(api: Api, name: str) -> None:
    files = [pb.ModelFile(path=name, size=1, sha256="ab" * 32)]
    with pytest.raises(InvalidArgument, match=r"files\[0\]\.path"):
        await api.worker.create_base_model(WORKER, _base("models/m", files=files))
    await api.loaded_base("base")
    reg = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="base", suffix="x", organization_id="o", project_id="p")
    )
    with pytest.raises(InvalidArgument, match=r"files\[0\]\.path"):
        await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=reg.id, files=files))
    await api.fine_tuned("base", "ft")
    claim = await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest(holder="l"))
    done = pb.UpdateModelLoadingStatusRequest(
        id=claim.model_id, attempt=claim.attempt, success=pb.UpdateModelLoadingStatusRequestSuccess(), files=files
    )
    with pytest.raises(InvalidArgument, match=r"files\[0\]\.path"):
        await api.worker.update_model_loading_status(WORKER, done)


async def test_a_model_loading_under_a_lease_cannot_be_taken_over(api: Api) -> None:
    """The attack: while a model loads, mark it FAILED with attempt 0, or register it at a path of one's choice."""
    await api.request_base("gemma:2b", pb.SourceRepository.OLLAMA)
    await api.request_base("other:1", pb.SourceRepository.OLLAMA)
    claim = await api.acquire_base("loader-1")
    own = await api.acquire_base("attacker")  # a claim of its own, on another model
    assert (claim.base_model_id, own.base_model_id) == ("gemma:2b", "other:1")
    with pytest.raises(FailedPrecondition, match="claimed under a lease"):
        await api.base_status("gemma:2b", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="pwned"))
    for req in (
        pb.CreateBaseModelRequest(id="gemma:2b", path="models/evil", formats=[pb.ModelFormat.OLLAMA]),
        # Naming a claim of its own does not help either: only the claim on this very model counts.
        pb.CreateBaseModelRequest(
            id="gemma:2b",
            path="models/evil",
            formats=[pb.ModelFormat.OLLAMA],
            loading_model_id="other:1",
            attempt=own.attempt,
        ),
    ):
        with pytest.raises(FailedPrecondition, match="only its loader may register it"):
            await api.worker.create_base_model(WORKER, req)
    with pytest.raises(NotFound):
        await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="gemma:2b"))
    got = await api.get("gemma:2b")
    assert (got.loading_status, got.loading_failure_reason) == (pb.ModelLoadingStatus.LOADING, "")
    # The real loader finishes it.
    await api.worker.create_base_model(
        WORKER,
        pb.CreateBaseModelRequest(
            id="gemma:2b",
            path="models/base-models/gemma-2b",
            formats=[pb.ModelFormat.OLLAMA],
            loading_model_id="gemma:2b",
            attempt=claim.attempt,
        ),
    )
    path = await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="gemma:2b"))
    assert path.path == "models/base-models/gemma-2b"


async def test_storage_prefix_must_be_a_bucket_path(api: Api) -> None:
    for prefix in ("s3://other", "../up", "/abs"):
        with pytest.raises(InvalidArgument, match="path_prefix"):
            await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix=prefix))
    await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix="tenant/models"))
    with pytest.raises(InvalidArgument, match="storage prefix 'tenant/models/'"):
        await api.worker.create_base_model(WORKER, _base("models/base-models/m", source_repository=HF))
    await api.worker.create_base_model(WORKER, _base("tenant/models/base-models/m"))


async def test_a_leased_fine_tuned_model_is_published_only_by_its_claim(api: Api) -> None:
    """Row 5: PublishModel without the lease marked a model another loader was loading SUCCEEDED, with any files."""
    await api.loaded_base("base")
    model = await api.fine_tuned("base", "leased")
    files = [pb.ModelFile(path="weights.bin", size=1, sha256="ab" * 32)]
    with pytest.raises(FailedPrecondition, match="is not loading"):  # requested, not claimed yet
        await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=model.id, files=files))
    claim = await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest(holder="loader-1"))
    for attempt, problem in ((0, "claimed under a lease"), (claim.attempt + 1, "is stale")):
        with pytest.raises(FailedPrecondition, match=problem):
            await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=model.id, files=files, attempt=attempt))
    got = await api.get(model.id)
    assert (got.loading_status, list(got.files)) == (pb.ModelLoadingStatus.LOADING, [])
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=model.id, files=files, attempt=claim.attempt))
    got = await api.get(model.id)
    assert (got.loading_status, [f.path for f in got.files]) == (pb.ModelLoadingStatus.SUCCEEDED, ["weights.bin"])
    # A model a training job registered carries no lease: published as before, without an attempt.
    registered = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="base", suffix="job", organization_id="o", project_id="p")
    )
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=registered.id))
