"""Cached answers with the catalogue version in the database: every write moves it; a server answers from its
cache only while it stands, so an acknowledged write is never followed by a stale answer, whichever server made it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from model_manager.api.wire import JSON, PROTO
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.cache import ResponseCache, cached
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from model_manager.store import catalog
from tests.helpers import HF, OTHER_PROJECT, WHO, WORKER, Api


def _replicas(model_id: str, n: int) -> pb.UpdateModelRequest:
    config = pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=n))
    mask = FieldMask(paths=["config.runtime_config.replicas"])
    return pb.UpdateModelRequest(model=pb.Model(id=model_id, config=config), update_mask=mask)


def _replicas_in(body: bytes) -> int:
    config = pb.Model.parse(body).config
    assert config is not None and config.runtime_config is not None
    return config.runtime_config.replicas


async def _version(ctx: ServiceContext) -> int:
    async with ctx.db.reading() as conn:
        return await catalog.version(conn)


async def test_every_write_to_the_catalogue_moves_the_version(ctx: ServiceContext) -> None:
    api = Api(ctx)
    seen = [await _version(ctx)]

    async def moved() -> None:
        seen.append(await _version(ctx))
        assert seen[-1] > seen[-2]

    await api.request_base("org/a")
    await moved()
    claim = await api.acquire_base()
    await moved()
    await api.base_status("org/a", status_message="halfway", attempt=claim.attempt)
    await moved()
    await api.base_status("org/a", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="x"), attempt=1)
    await moved()
    await api.loaded_base("m")
    await moved()
    await api.activate("m")
    await moved()
    await api.models.update_model(WHO, _replicas("m", 2))
    await moved()
    await api.models.deactivate_model(WHO, pb.DeactivateModelRequest(id="m"))
    await moved()
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="m"))
    await moved()
    reg = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="org-a", suffix="s", organization_id="o", project_id="p")
    )
    await moved()
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=reg.id))
    await moved()


async def test_reads_are_answered_from_the_cache_until_a_write(ctx: ServiceContext) -> None:
    ctx = replace(ctx, cache=ResponseCache())
    api = Api(ctx)
    await api.loaded_base("m")
    get = pb.GetModelRequest(id="m")
    first = await api.models.get_model_encoded(WHO, get, PROTO)
    assert _replicas_in(first) == 1
    misses = ctx.cache.misses if ctx.cache else 0
    assert await api.models.get_model_encoded(WHO, get, PROTO) is first  # the very same bytes
    assert ctx.cache is not None and ctx.cache.misses == misses and ctx.cache.hits >= 1
    await api.models.update_model(WHO, _replicas("m", 4))
    assert _replicas_in(await api.models.get_model_encoded(WHO, get, PROTO)) == 4
    # Answers are kept apart by caller: another project does not get this project's page.
    listing = pb.ListModelsRequest(include_loading_models=True)
    await api.models.create_model(WHO, pb.CreateModelRequest(id="org/p", source_repository=HF, is_project_scoped=True))
    mine = pb.ListModelsResponse.parse(await api.models.list_models_encoded(WHO, listing, PROTO))
    theirs = pb.ListModelsResponse.parse(await api.models.list_models_encoded(OTHER_PROJECT, listing, PROTO))
    assert sorted(m.id for m in mine.data) == ["m", "org/p"] and [m.id for m in theirs.data] == ["m"]


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


async def test_callers_that_miss_together_share_one_build(ctx: ServiceContext) -> None:
    ctx = replace(ctx, cache=ResponseCache())
    builds = 0
    gate = asyncio.Event()

    async def build(conn: object) -> bytes:
        nonlocal builds
        builds += 1
        await gate.wait()
        return b"answer"

    callers = [asyncio.create_task(cached(ctx, "k", build, bytes)) for _ in range(50)]
    await asyncio.sleep(0.1)
    callers[0].cancel()  # one caller gives up: the others still get the answer
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert builds == 1
    assert isinstance(results[0], asyncio.CancelledError) and results[1:] == [b"answer"] * 49
    assert ctx.cache is not None and not ctx.cache.flights
