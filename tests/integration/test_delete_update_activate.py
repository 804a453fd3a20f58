"""DeleteModel, UpdateModel, ActivateModel and DeactivateModel rules, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound
from model_manager.objectstore.base import StoreError
from model_manager.objectstore.local import LocalStore
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config
from model_manager.service.models import ModelsService
from tests.helpers import WHO, Api, rest_client
from tests.objects import put


async def _with_files(api: Api, model_id: str, path: str) -> None:
    await api.loaded_base(model_id, path=path)
    await put(api.ctx.objects, f"{path}/config.json", b"{}")
    await put(api.ctx.objects, f"{path}/weights/model.safetensors", b"x" * 10)


async def test_delete_removes_the_model_and_its_files(api: Api, objects: LocalStore) -> None:
    await _with_files(api, "org-a", "models/base-models/org/a")
    await _with_files(api, "org-ab", "models/base-models/org/ab")  # shares a name prefix, must survive
    resp = await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org-a"))
    assert (resp.id, resp.object, resp.deleted) == ("org-a", "model", True)
    with pytest.raises(NotFound):
        await api.get("org-a")
    assert await objects.list_objects("models/base-models/org/a/") == []
    assert len(await objects.list_objects("models/base-models/org/ab/")) == 2


async def test_delete_keeps_files_another_model_points_at(api: Api, objects: LocalStore) -> None:
    await _with_files(api, "first", "models/shared")
    await api.loaded_base("second", path="models/shared")
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="first"))
    assert len(await objects.list_objects("models/shared/")) == 2


async def test_active_model_cannot_be_deleted(api: Api) -> None:
    await api.loaded_base("m")
    await api.activate("m")
    with pytest.raises(FailedPrecondition, match='model "m" is active'):
        await api.models.delete_model(WHO, pb.DeleteModelRequest(id="m"))
    assert (await api.get("m")).id == "m"


async def test_delete_missing_model_is_not_found(api: Api) -> None:
    with pytest.raises(NotFound, match='model "nope" not found'):
        await api.models.delete_model(WHO, pb.DeleteModelRequest(id="nope"))


async def test_requested_model_can_be_deleted(api: Api) -> None:
    await api.request_base("org/name")
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/name"))
    assert (await api.list(include_loading_models=True)).total_items == 0


async def test_deleting_a_base_model_drops_its_hf_repo_record(api: Api) -> None:
    await api.loaded_base("org-name")
    await api.worker.create_hf_model_repo(WHO, pb.CreateHfModelRepoRequest(name="org/name"))
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org-name"))
    with pytest.raises(NotFound):
        await api.worker.get_hf_model_repo(WHO, pb.GetHfModelRepoRequest(name="org/name"))


def _update(model_id: str, config: pb.ModelConfig | None, *paths: str) -> pb.UpdateModelRequest:
    return pb.UpdateModelRequest(model=pb.Model(id=model_id, config=config), update_mask=FieldMask(paths=list(paths)))


async def test_update_changes_only_the_masked_paths(api: Api) -> None:
    await api.loaded_base("m")
    new = pb.ModelConfig(
        runtime_config=pb.ModelConfigRuntimeConfig(
            replicas=4, resources=pb.ModelConfigRuntimeConfigResources(gpu=8), extra_args=["--a"]
        )
    )
    got = await api.models.update_model(WHO, _update("m", new, "config.runtime_config.replicas"))
    expected = model_config.default_config()
    expected.runtime_config.replicas = 4  # type: ignore[union-attr]
    assert got.config == expected
    got = await api.models.update_model(
        WHO, _update("m", new, "config.runtime_config.extra_args", "config.runtime_config.resources.gpu")
    )
    assert got.config.runtime_config.extra_args == ["--a"]  # type: ignore[union-attr]
    assert got.config.runtime_config.resources.gpu == 8  # type: ignore[union-attr]
    assert (await api.get("m")).config == got.config


@pytest.mark.parametrize(
    ("paths", "message"),
    [((), "update_mask is required"), (("id",), "cannot be updated"), (("config.foo",), "cannot be updated")],
)
async def test_update_mask_must_name_config_paths(api: Api, paths: tuple[str, ...], message: str) -> None:
    await api.loaded_base("m")
    with pytest.raises(InvalidArgument, match=message):
        await api.models.update_model(WHO, _update("m", model_config.default_config(), *paths))


async def test_update_result_must_validate_and_changes_nothing_otherwise(api: Api) -> None:
    await api.loaded_base("m")
    bad = pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=0))
    with pytest.raises(InvalidArgument, match="replicas"):
        await api.models.update_model(WHO, _update("m", bad, "config.runtime_config.replicas"))
    assert (await api.get("m")).config == model_config.default_config()
    with pytest.raises(NotFound):
        await api.models.update_model(WHO, _update("missing", bad, "config"))


async def test_activate_and_deactivate(api: Api) -> None:
    await api.loaded_base("m")
    await api.activate("m")
    assert (await api.get("m")).activation_status == pb.ActivationStatus.ACTIVE
    await api.models.deactivate_model(WHO, pb.DeactivateModelRequest(id="m"))
    assert (await api.get("m")).activation_status == pb.ActivationStatus.INACTIVE


async def test_only_loaded_models_can_be_activated(api: Api) -> None:
    await api.request_base("org/name")
    with pytest.raises(NotFound):
        await api.activate("org/name")
    with pytest.raises(InvalidArgument, match="id is required"):
        await api.activate("")


async def test_concurrent_activate_and_delete_never_delete_an_active_model(api: Api) -> None:
    for i in range(40):
        model_id = f"race-{i}"
        await api.loaded_base(model_id)
        first, deleted, second = await asyncio.gather(
            api.activate(model_id),
            api.models.delete_model(WHO, pb.DeleteModelRequest(id=model_id)),
            api.activate(model_id),
            return_exceptions=True,
        )
        activated = [r for r in (first, second) if r is None]
        if isinstance(deleted, pb.DeleteModelResponse):
            # Deleted: it was inactive then, so every activation came after and found nothing.
            assert not activated and all(isinstance(r, NotFound) for r in (first, second)), (first, second)
        else:
            assert isinstance(deleted, FailedPrecondition), repr(deleted)
            assert activated and (await api.get(model_id)).activation_status == pb.ActivationStatus.ACTIVE


async def test_delete_removes_exactly_its_own_files(api: Api, objects: LocalStore) -> None:
    # An object-store model named "org" lives in the directory that holds the Hugging Face model org/small.
    await _with_files(api, "org/small-hf", "models/base-models/org/small")
    await _with_files(api, "org", "models/base-models/org")
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org"))
    assert [o.key for o in await objects.list_objects("models/base-models/")] == [
        "models/base-models/org/small/config.json",
        "models/base-models/org/small/weights/model.safetensors",
    ]
    assert (await api.get("org/small-hf")).loading_status == pb.ModelLoadingStatus.SUCCEEDED


class FlakyStore(LocalStore):
    """A local store whose deletions fail while `down` is set, as an unreachable bucket's would."""

    down = True

    async def delete_keys(self, keys: list[str]) -> None:
        if self.down:
            raise StoreError("S3 unreachable deleting objects", "EndpointConnectionError", transient=True)
        await super().delete_keys(keys)


async def test_files_a_delete_could_not_remove_are_removed_later(api: Api, tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path / "flaky")
    ctx = replace(api.ctx, objects=flaky)
    models = ModelsService(ctx)
    await api.loaded_base("org-a", path="models/base-models/org/a")
    await put(flaky, "models/base-models/org/a/config.json", b"{}")
    resp = await models.delete_model(WHO, pb.DeleteModelRequest(id="org-a"))
    assert resp.deleted  # the model is gone; its files are on their way out, and the answer says so
    assert resp.files_removal_pending and "S3 unreachable deleting objects" in resp.files_removal_error
    async with rest_client(ctx) as client:  # the same over REST, as the CLI shows it
        await api.loaded_base("org-b", path="models/base-models/org/b")
        await put(flaky, "models/base-models/org/b/config.json", b"{}")
        body = await (await client.delete("/v1/models/org-b")).json()
        assert body["deleted"] and body["files_removal_pending"] and body["files_removal_error"]
    assert len(await flaky.list_objects("models/")) == 2
    assert await models.removals.retry_pending() == 2  # still down: kept for later
    flaky.down = False
    assert await models.removals.retry_pending() == 0
    assert await flaky.list_objects("models/") == []
    assert await models.removals.retry_pending() == 0  # nothing left to do
