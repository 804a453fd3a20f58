"""Aliases over REST (real HTTP) and the services, on SQLite and PostgreSQL: resolution wherever a model is named,
the rules (never a model id, the target must exist and be visible, no deleting a named model, scopes and walls),
history, and re-points that readers see at once, cache included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from model_manager.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from model_manager.core.identity import Identity, Role
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.aliases import AliasService
from model_manager.service.context import ServiceContext
from tests.helpers import HF, OTHER_PROJECT, OTHER_TENANT, WHO, WORKER, Api

WRITER = Identity(WHO.tenant_id, WHO.organization_id, WHO.project_id, Role.WRITER, key_id="k-writer")
READER = Identity(WHO.tenant_id, WHO.organization_id, WHO.project_id, Role.READER)


@pytest.fixture
def aliases(ctx: ServiceContext) -> AliasService:
    return AliasService(ctx)


async def _set(aliases: AliasService, name: str, model_id: str, who: Identity = WHO, scoped: bool = False) -> pb.Alias:
    return await aliases.set_alias(who, pb.SetAliasRequest(name=name, model_id=model_id, is_project_scoped=scoped))


async def test_an_alias_is_the_model_it_names_over_rest(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.loaded_base("llama-3-1")
    await api.loaded_base("llama-3-2")
    r = await http.put("/v1/aliases/chat", json={"model_id": "llama-3-1"})
    assert r.status == 200, await r.text()
    made = await r.json()
    assert (made["name"], made["model_id"], made["project_id"]) == ("chat", "llama-3-1", "")
    assert [(h["from_model_id"], h["to_model_id"]) for h in made["history"]] == [("", "llama-3-1")]

    got = await (await http.get("/v1/models/chat")).json()
    assert (got["id"], got["aliases"]) == ("llama-3-1", ["chat"])  # the model itself, with its alias
    listed = await (await http.get("/v1/models")).json()
    assert {m["id"]: m["aliases"] for m in listed["data"]} == {"llama-3-1": ["chat"], "llama-3-2": []}

    # Re-pointed: the next read names the other model (the first answer was cached), and the listing follows.
    r = await http.put("/v1/aliases/chat", json={"model_id": "llama-3-2"})
    assert r.status == 200 and (await r.json())["model_id"] == "llama-3-2"
    assert (await (await http.get("/v1/models/chat")).json())["id"] == "llama-3-2"
    assert (await (await http.get("/v1/models/llama-3-1")).json())["aliases"] == []
    listed = await (await http.get("/v1/models")).json()
    assert {m["id"]: m["aliases"] for m in listed["data"]} == {"llama-3-1": [], "llama-3-2": ["chat"]}

    shown = await (await http.get("/v1/aliases/chat")).json()
    assert [(h["from_model_id"], h["to_model_id"]) for h in shown["history"]] == [
        ("", "llama-3-1"),
        ("llama-3-1", "llama-3-2"),
    ]
    assert [a["name"] for a in (await (await http.get("/v1/aliases")).json())["data"]] == ["chat"]
    # Actions take the alias too.
    assert (await http.post("/v1/models/chat:activate")).status == 200
    assert (await (await http.get("/v1/models/llama-3-2")).json())["activation_status"] == "ACTIVATION_STATUS_ACTIVE"

    r = await http.delete("/v1/aliases/chat")
    assert r.status == 200 and await r.json() == {"name": "chat", "deleted": True}
    assert (await http.get("/v1/models/chat")).status == 404
    assert (await http.get("/v1/aliases/chat")).status == 404


async def test_the_worker_api_and_grpc_services_resolve_aliases_too(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("llama-3-1")
    await _set(aliases, "chat", "llama-3-1")
    got = await api.worker.get_model(WORKER, pb.GetModelRequest(id="chat"))
    assert (got.id, got.aliases) == ("llama-3-1", ["chat"])
    worker_list = pb.ListModelsResponse.parse(
        await api.worker.list_models_encoded(WORKER, pb.ListModelsRequest(), _proto())
    )
    assert [(m.id, m.aliases) for m in worker_list.data] == [("llama-3-1", ["chat"])]
    await api.models.deactivate_model(WHO, pb.DeactivateModelRequest(id="chat"))


def _proto() -> Any:
    from model_manager.api.wire import PROTO

    return PROTO


async def test_an_alias_is_never_a_model_id_either_way_round(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("llama")
    await api.request_base("org/pending")
    with pytest.raises(AlreadyExists, match='alias "llama" would have the id of a model'):
        await _set(aliases, "llama", "llama")
    with pytest.raises(AlreadyExists, match="would have the id of a model"):
        await _set(aliases, "org-pending", "llama")  # a requested org/pending loads as org-pending
    await _set(aliases, "org-chat", "llama")
    with pytest.raises(AlreadyExists, match='model "org/chat" would have the name of the alias "org-chat"'):
        await api.request_base("org/chat", HF)  # it would be loaded as org-chat


async def test_the_model_named_must_exist_and_be_visible(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("theirs", project_id=OTHER_PROJECT.project_id)
    await api.loaded_base("llama")
    await _set(aliases, "chat", "llama")
    with pytest.raises(NotFound, match='model "missing" not found'):
        await _set(aliases, "x", "missing")
    with pytest.raises(NotFound, match='model "theirs" not found'):
        await _set(aliases, "x", "theirs", who=WRITER, scoped=True)
    with pytest.raises(NotFound, match='model "chat" not found'):  # an alias names a model, not another alias
        await _set(aliases, "x", "chat")
    for bad in ("", "a/b", "a:b", "-x", "x" * 257):
        with pytest.raises(InvalidArgument, match="name"):
            await _set(aliases, bad, "llama")
    assert [a.name for a in (await aliases.list_aliases(WHO, pb.ListAliasesRequest())).data] == ["chat"]


async def test_a_model_an_alias_names_cannot_be_deleted(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("llama")
    await _set(aliases, "chat", "llama")
    await _set(aliases, "assistant", "llama")
    with pytest.raises(FailedPrecondition, match='named by the alias "assistant", "chat"'):
        await api.models.delete_model(WHO, pb.DeleteModelRequest(id="llama"))
    with pytest.raises(FailedPrecondition, match="named by the alias"):
        await api.models.delete_model(WHO, pb.DeleteModelRequest(id="chat"))  # the alias names the same model
    for name in ("chat", "assistant"):
        await aliases.delete_alias(WHO, pb.DeleteAliasRequest(name=name))
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="llama"))


async def test_aliases_are_scoped_and_walled_like_models(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("global-model")
    await api.loaded_base("mine", project_id=WHO.project_id)
    with pytest.raises(PermissionDenied, match="alias of the whole tenant"):
        await _set(aliases, "chat", "global-model", who=WRITER)
    with pytest.raises(PermissionDenied, match="setting aliases needs the writer role"):
        await _set(aliases, "chat", "global-model", who=READER, scoped=True)
    project_alias = await _set(aliases, "team", "mine", who=WRITER, scoped=True)
    assert project_alias.project_id == WHO.project_id
    await _set(aliases, "chat", "global-model")

    other = Identity(OTHER_PROJECT.tenant_id, OTHER_PROJECT.organization_id, OTHER_PROJECT.project_id, Role.WRITER)
    assert [a.name for a in (await aliases.list_aliases(other, pb.ListAliasesRequest())).data] == ["chat"]
    with pytest.raises(NotFound):
        await aliases.get_alias(other, pb.GetAliasRequest(name="team"))
    with pytest.raises(NotFound):
        await api.get("team", who=other)
    with pytest.raises(AlreadyExists, match="in another project"):
        await _set(aliases, "team", "global-model", who=other, scoped=True)
    with pytest.raises(PermissionDenied, match="alias of the whole tenant"):
        await _set(aliases, "chat", "global-model", who=WRITER)  # re-pointing a tenant alias needs admin
    # Another tenant sees none of them.
    assert (await aliases.list_aliases(OTHER_TENANT, pb.ListAliasesRequest())).data == []
    with pytest.raises(NotFound):
        await api.get("chat", who=OTHER_TENANT)
    # The model's aliases are the ones the caller sees.
    assert (await api.get("global-model", who=other)).aliases == ["chat"]


async def test_readers_see_the_old_model_or_the_new_one_while_an_alias_is_re_pointed(
    api: Api, aliases: AliasService
) -> None:
    await api.loaded_base("a")
    await api.loaded_base("b")
    await _set(aliases, "chat", "a")
    seen: list[str] = []
    errors: list[BaseException] = []
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            try:
                seen.append((await api.get("chat")).id)
            except Exception as e:  # any error is what this test looks for
                errors.append(e)

    readers = [asyncio.create_task(read()) for _ in range(4)]
    for i in range(20):
        await _set(aliases, "chat", "b" if i % 2 == 0 else "a")
        await asyncio.sleep(0)
    done.set()
    await asyncio.gather(*readers)
    assert errors == [] and set(seen) <= {"a", "b"} and len(seen) > 20
    # Each change is one entry of the history, by the key that made it.
    shown = await aliases.get_alias(WHO, pb.GetAliasRequest(name="chat"))
    assert len(shown.history) == 21 and shown.model_id == "a"


async def test_watching_an_alias_follows_the_model_it_names(api: Api, aliases: AliasService) -> None:
    await api.request_base("org/x")
    await api.loaded_base("b")
    await _set(aliases, "chat", "org/x")
    events = api.models.watch_model_encoded(WHO, pb.WatchModelRequest(id="chat", timeout_seconds=5), _proto())
    first = pb.Model.parse(await anext(events))
    assert (first.id, first.aliases, first.loading_status) == ("org/x", ["chat"], pb.ModelLoadingStatus.REQUESTED)
    # The model it names changes: the watch sees it (its answer is not kept under the alias's name).
    await api.models.update_model(
        WHO,
        pb.UpdateModelRequest(
            model=pb.Model(id="org/x", config=pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=3))),
            update_mask=FieldMask(paths=["config.runtime_config.replicas"]),
        ),
    )
    changed = pb.Model.parse(await anext(events))
    assert changed.config is not None and changed.config.runtime_config is not None
    assert changed.config.runtime_config.replicas == 3
    await events.aclose()


async def test_a_loader_cannot_register_a_model_with_an_aliass_name(api: Api, aliases: AliasService) -> None:
    await api.loaded_base("llama")
    await _set(aliases, "chat", "llama")
    with pytest.raises(FailedPrecondition, match='model "chat" would have the name of the alias "chat"'):
        await api.loaded_base("chat")  # the worker API's CreateBaseModel, as a loader's static list calls it
    assert (await api.get("chat")).id == "llama"
