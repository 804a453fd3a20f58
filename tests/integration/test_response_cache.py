"""Cached answers with versions scoped in the database: a model's answer moves with writes to that model only, a
tenant's listings with its own writes; a server answers from its cache only while the version stands, so an
acknowledged write is never followed by a stale answer, whichever server made it, and writes elsewhere cost
nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from model_manager.api.wire import JSON, PROTO
from model_manager.core.identity import Identity, Role
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.cache import ListScope, ModelScope, ResponseCache
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from tests.helpers import HF, OTHER_PROJECT, WHO, WORKER, Api


def _replicas(model_id: str, n: int) -> pb.UpdateModelRequest:
    config = pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=n))
    mask = FieldMask(paths=["config.runtime_config.replicas"])
    return pb.UpdateModelRequest(model=pb.Model(id=model_id, config=config), update_mask=mask)


def _replicas_in(body: bytes) -> int:
    config = pb.Model.parse(body).config
    assert config is not None and config.runtime_config is not None
    return config.runtime_config.replicas


async def _versions(ctx: ServiceContext) -> tuple[object, ...]:
    """The versions of model "m", of the default tenant's listings of loaded models, and of all its listings."""
    tenant = WHO.tenant_id
    return (
        await ctx.versions.of(ModelScope(tenant, "m")),
        await ctx.versions.of(ListScope(tenant, loading=False)),
        await ctx.versions.of(ListScope(tenant, loading=True)),
    )


async def test_every_write_moves_the_versions_of_what_it_changed_and_no_other(ctx: ServiceContext) -> None:
    api = Api(ctx)
    seen = [await _versions(ctx)]

    async def moved(model: bool, loaded_listing: bool) -> None:
        """Which versions the last write moved: the model's, the listings of loaded models'; every write moves
        the listings with loading models."""
        seen.append(await _versions(ctx))
        (m0, l0, a0), (m1, l1, a1) = seen[-2], seen[-1]
        assert (m1 != m0, l1 != l0, a1 != a0) == (model, loaded_listing, True), seen[-2:]

    await api.request_base("org/a")  # another model: inserted (it may shadow, so listings of loaded ones move)
    await moved(model=False, loaded_listing=True)
    claim = await api.acquire_base()
    await moved(model=False, loaded_listing=False)  # a requested model becomes loading: nothing loaded changed
    await api.base_status("org/a", status_message="halfway", attempt=claim.attempt)
    await moved(model=False, loaded_listing=False)  # a progress report
    await api.base_status("org/a", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="x"), attempt=1)
    await moved(model=False, loaded_listing=False)
    await api.loaded_base("m")
    await moved(model=True, loaded_listing=True)
    await api.activate("m")
    await moved(model=True, loaded_listing=True)
    await api.models.update_model(WHO, _replicas("m", 2))
    await moved(model=True, loaded_listing=True)
    await api.models.deactivate_model(WHO, pb.DeactivateModelRequest(id="m"))
    await moved(model=True, loaded_listing=True)
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="m"))
    await moved(model=True, loaded_listing=True)
    await api.loaded_base("m")  # the same id again: never the version it had before it was deleted
    await moved(model=True, loaded_listing=True)
    assert len({s[0] for s in seen[5:]}) == len(seen[5:])  # every state of "m" had its own version
    reg = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="org-a", suffix="s", organization_id="o", project_id="p")
    )
    await moved(model=False, loaded_listing=True)
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=reg.id))
    await moved(model=False, loaded_listing=True)
    # Another tenant's writes move none of this tenant's versions.
    other = Identity("tenant-b", "o", "p", Role.ADMIN)
    await api.request_base("org/b", who=other)
    assert await _versions(ctx) == seen[-1]


async def test_reads_are_answered_from_the_cache_until_a_write_to_that_model(ctx: ServiceContext) -> None:
    ctx = replace(ctx, cache=ResponseCache())
    api = Api(ctx)
    await api.loaded_base("m")
    await api.request_base("org/loading")
    claim = await api.acquire_base()
    get = pb.GetModelRequest(id="m")
    first = await api.models.get_model_encoded(WHO, get, PROTO)
    assert _replicas_in(first) == 1
    misses = ctx.cache.misses if ctx.cache else 0
    assert await api.models.get_model_encoded(WHO, get, PROTO) is first  # the very same bytes
    assert ctx.cache is not None and ctx.cache.misses == misses and ctx.cache.hits >= 1
    # Writes to other models (a loader reporting progress, another model changed) leave the answer in place.
    page = await api.models.list_models_encoded(WHO, pb.ListModelsRequest(), PROTO)
    misses = ctx.cache.misses
    for n in range(3):
        await api.base_status("org/loading", status_message=f"{n} MiB", attempt=claim.attempt)
    await api.loaded_base("other")
    await api.models.update_model(WHO, _replicas("other", 3))
    assert await api.models.get_model_encoded(WHO, get, PROTO) is first
    assert ctx.cache.misses == misses
    # The loaded listing changed with "other"; with loading models it changes with every report.
    assert await api.models.list_models_encoded(WHO, pb.ListModelsRequest(), PROTO) != page
    await api.models.update_model(WHO, _replicas("m", 4))
    assert _replicas_in(await api.models.get_model_encoded(WHO, get, PROTO)) == 4
    # Answers are kept apart by caller: another project does not get this project's page.
    listing = pb.ListModelsRequest(include_loading_models=True)
    await api.models.create_model(WHO, pb.CreateModelRequest(id="org/p", source_repository=HF, is_project_scoped=True))
    mine = pb.ListModelsResponse.parse(await api.models.list_models_encoded(WHO, listing, PROTO))
    theirs = pb.ListModelsResponse.parse(await api.models.list_models_encoded(OTHER_PROJECT, listing, PROTO))
    assert sorted(m.id for m in mine.data) == ["m", "org/loading", "org/p", "other"]
    assert sorted(m.id for m in theirs.data) == ["m", "org/loading", "other"]


async def test_no_stale_answer_after_an_acknowledged_write_under_concurrency(ctx: ServiceContext) -> None:
    """Two servers (two caches) on one database; writers on one, readers on the other, all at once. After each
    acknowledged write, the other server's cached read must show it (or something newer)."""
    one = ModelsService(replace(ctx, cache=ResponseCache()))
    two = ModelsService(replace(ctx, cache=ResponseCache()))
    api = Api(ctx)
    names = [f"m{i}" for i in range(4)]
    for name in names:
        await api.loaded_base(name)
    stale: list[str] = []

    async def writer_and_reader(name: str) -> None:
        for n in range(2, 14):
            await one.update_model(WHO, _replicas(name, n))  # acknowledged on server one
            for encoding in (PROTO, JSON):
                body = await two.get_model_encoded(WHO, pb.GetModelRequest(id=name), encoding)
                got = (
                    _replicas_in(body)
                    if encoding is PROTO
                    else json.loads(body)["config"]["runtime_config"]["replicas"]
                )
                if got < n:
                    stale.append(f"{name}: wrote {n}, read {got}")

    async def noise() -> None:  # cache-filling reads on both servers all along
        for _ in range(30):
            for server in (one, two):
                await server.list_models_encoded(WHO, pb.ListModelsRequest(), PROTO)
            await asyncio.sleep(0)

    await asyncio.gather(*(writer_and_reader(n) for n in names), noise(), noise())
    assert stale == []
    assert two.ctx.cache is not None and two.ctx.cache.hits > 0  # the cache did serve
