"""CreateModel rules, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from model_manager.core.errors import AlreadyExists, InvalidArgument, NotFound
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config
from tests.helpers import HF, OBJECT_STORE, OLLAMA, OTHER_PROJECT, WHO, WORKER, Api


async def test_hugging_face_base_model_is_requested_inactive_with_default_config(api: Api) -> None:
    m = await api.request_base("google/gemma-2b")
    assert m.id == "google/gemma-2b"
    assert m.loading_status == pb.ModelLoadingStatus.REQUESTED
    assert m.activation_status == pb.ActivationStatus.INACTIVE
    assert m.is_base_model and m.owned_by == "system" and m.object == "model"
    assert m.config == model_config.default_config()
    stored = await api.get("google/gemma-2b")
    assert stored.loading_status == pb.ModelLoadingStatus.REQUESTED


async def test_revision_is_not_part_of_the_id_and_reaches_the_loader(api: Api) -> None:
    m = await api.request_base("org/name@v1.2")
    assert m.id == "org/name"
    claim = await api.acquire_base()
    assert (claim.base_model_id, claim.revision) == ("org/name", "v1.2")


async def test_single_file_hugging_face_id_is_accepted(api: Api) -> None:
    assert (await api.request_base("org/name/model-q4.gguf")).id == "org/name/model-q4.gguf"


@pytest.mark.parametrize("bad", ["org", "org/", "/name", "a/b/c/d", "org/name@", "org//x"])
async def test_malformed_hugging_face_ids_are_rejected(api: Api, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="id"):
        await api.request_base(bad)
    assert (await api.list(include_loading_models=True)).total_items == 0


async def test_ollama_ids_need_name_and_tag(api: Api) -> None:
    assert (await api.request_base("gemma:2b", OLLAMA)).id == "gemma:2b"
    for bad in ["gemma", "gemma:", ":2b"]:
        with pytest.raises(InvalidArgument, match="name:tag"):
            await api.request_base(bad, OLLAMA)


async def test_object_store_id_must_not_be_an_s3_url(api: Api) -> None:
    # Upstream had this check reversed: it required the s3:// form.
    assert (await api.request_base("my-model", OBJECT_STORE)).id == "my-model"
    with pytest.raises(InvalidArgument, match="s3://"):
        await api.request_base("s3://bucket/my-model", OBJECT_STORE)


async def test_unknown_source_repository_names_the_allowed_values(api: Api) -> None:
    with pytest.raises(InvalidArgument, match="SOURCE_REPOSITORY_HUGGING_FACE"):
        await api.request_base("org/name", pb.SourceRepository.UNSPECIFIED)


@pytest.mark.parametrize(
    "bad", ["x" * 257, "org/na\x00me", "org/../etc", "../x", "org/na\nme"], ids=["long", "nul", "dotdot", "lead", "nl"]
)
async def test_ids_that_are_too_long_or_unsafe_are_rejected(api: Api, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        await api.request_base(bad, OBJECT_STORE)


async def test_duplicate_and_converted_ids_are_taken(api: Api) -> None:
    await api.request_base("org/name")
    with pytest.raises(AlreadyExists, match='model "org/name" already exists'):
        await api.request_base("org/name")
    await api.loaded_base("google-gemma")
    with pytest.raises(AlreadyExists, match='model "google-gemma" already exists'):
        await api.request_base("google/gemma")


@pytest.mark.parametrize(
    "config",
    [
        pb.ModelConfig(),
        pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=0)),
        pb.ModelConfig(
            runtime_config=pb.ModelConfigRuntimeConfig(
                replicas=1, resources=pb.ModelConfigRuntimeConfigResources(gpu=-1)
            )
        ),
    ],
    ids=["no-runtime", "zero-replicas", "negative-gpu"],
)
async def test_invalid_config_is_rejected_and_nothing_created(api: Api, config: pb.ModelConfig) -> None:
    with pytest.raises(InvalidArgument, match=r"config\.runtime_config"):
        await api.request_base("org/name", config=config)
    assert (await api.list(include_loading_models=True)).total_items == 0


async def test_given_config_is_stored(api: Api) -> None:
    config = pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=3, extra_args=["--x"]))
    await api.request_base("org/name", config=config)
    assert (await api.get("org/name")).config == config


async def test_project_scoped_base_models_are_visible_only_in_their_project(api: Api) -> None:
    await api.request_base("org/scoped", is_project_scoped=True)
    project = (await api.get("org/scoped")).project
    assert project is not None and project.id == WHO.project_id
    with pytest.raises(NotFound):
        await api.get("org/scoped", who=OTHER_PROJECT)
    # The same id may be requested in another project.
    await api.request_base("org/scoped", who=OTHER_PROJECT, is_project_scoped=True)
    # But not globally, where it would clash with both.
    with pytest.raises(AlreadyExists):
        await api.request_base("org/scoped")


async def test_fine_tuned_model_from_object_store(api: Api) -> None:
    await api.loaded_base("base-model")
    m = await api.fine_tuned("base-model", "my-run-1")
    assert m.id == "ft:base-model:my-run-1"
    assert (m.owned_by, m.is_base_model, m.base_model_id) == ("user", False, "base-model")
    assert m.loading_status == pb.ModelLoadingStatus.REQUESTED
    claim = await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest())
    assert claim.model_id == m.id
    assert claim.model_file_location == "s3://bucket/jobs/my-run-1"
    assert claim.dest_path == f"models/{WHO.tenant_id}/{WHO.project_id}/ft:base-model:my-run-1"
    assert claim.attempt == 1


async def test_fine_tuned_dest_path_uses_the_tenant_storage_config(api: Api) -> None:
    await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix="tenant-store"))
    await api.loaded_base("base-model", path="tenant-store/base-models/base-model")
    await api.fine_tuned("base-model", "a")
    claim = await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest())
    assert claim.dest_path.startswith("tenant-store/")


async def test_fine_tuned_from_hugging_face(api: Api) -> None:
    await api.loaded_base("base-model")
    req = pb.CreateModelRequest(
        is_fine_tuned_model=True,
        base_model_id="base-model",
        suffix="hf",
        source_repository=HF,
        model_file_location="org/adapter",
    )
    assert (await api.models.create_model(WHO, req)).id == "ft:base-model:hf"
    req.model_file_location = "s3://bucket/x"
    with pytest.raises(InvalidArgument, match="model_file_location"):
        await api.models.create_model(WHO, req)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("", "suffix is required"), ("x" * 19, "at most 18"), ("Has_Upper", "lowercase"), ("a b", "lowercase")],
)
async def test_fine_tuned_suffix_rules(api: Api, suffix: str, message: str) -> None:
    await api.loaded_base("base-model")
    with pytest.raises(InvalidArgument, match=message):
        await api.fine_tuned("base-model", suffix)


async def test_fine_tuned_needs_an_existing_base_and_a_valid_location(api: Api) -> None:
    with pytest.raises(NotFound, match='base model "missing" not found'):
        await api.fine_tuned("missing", "x")
    await api.loaded_base("base-model")
    for location in ["bucket/path", "s3://bucket", "s3:///path"]:
        req = pb.CreateModelRequest(
            is_fine_tuned_model=True,
            base_model_id="base-model",
            suffix="x",
            source_repository=OBJECT_STORE,
            model_file_location=location,
        )
        with pytest.raises(InvalidArgument, match="model_file_location"):
            await api.models.create_model(WHO, req)
    with pytest.raises(InvalidArgument, match="base_model_id is required"):
        await api.models.create_model(WHO, pb.CreateModelRequest(is_fine_tuned_model=True, suffix="x"))


async def test_duplicate_fine_tuned_model_is_refused(api: Api) -> None:
    await api.loaded_base("base-model")
    await api.fine_tuned("base-model", "x")
    with pytest.raises(AlreadyExists, match="ft:base-model:x"):
        await api.fine_tuned("base-model", "x")


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        # Both would be registered as "x-y" and overwrite each other's files.
        (("x/y", HF), ("x-y", OBJECT_STORE), 'clashes with model "x/y", loaded as "x-y"'),
        (("x-y", OBJECT_STORE), ("x/y", HF), 'model "x-y" already exists'),
        # One model's directory would hold the other's.
        (("org", OBJECT_STORE), ("org/small", HF), 'sit inside those of model "org"'),
        (("org/small", HF), ("org", OBJECT_STORE), 'sit inside those of model "org/small"'),
        (("org/gg", HF), ("org/gg/model.gguf", HF), 'model "org/gg"'),
        # Same directory under another id.
        (("gemma:2b", OLLAMA), ("gemma-2b", OBJECT_STORE), "would be stored in 'gemma-2b'"),
    ],
)
async def test_base_models_whose_files_would_clash_are_refused(
    api: Api, first: tuple[str, pb.SourceRepository], second: tuple[str, pb.SourceRepository], message: str
) -> None:
    await api.request_base(*first)
    with pytest.raises(AlreadyExists, match=re.escape(message)):
        await api.request_base(*second)
    listed = await api.list(include_loading_models=True)
    assert [m.id for m in listed.data] == [first[0]]  # nothing was created


async def test_a_loaded_model_clashes_by_its_stored_path(api: Api) -> None:
    await api.loaded_base("org-gg", path="models/base-models/org/gg")
    with pytest.raises(AlreadyExists, match="org-gg"):
        await api.request_base("org/gg/model.gguf")
    # Neighbours that only share a name prefix do not clash.
    await api.request_base("org/ggx")
    await api.request_base("org/g")
