"""Listing filters on format, architecture and quantization (from the metadata loaders report), on SQLite and
PostgreSQL, through the service, REST and gRPC: pages, totals and the cache all follow the filters."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from model_manager.api.wire import JSON
from model_manager.core.errors import InvalidArgument
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.cache import ResponseCache
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from tests.helpers import HF, WHO, WORKER, Api, grpcio_models, rest_client

GGUF, HUGGING_FACE = pb.ModelFormat.GGUF, pb.ModelFormat.HUGGING_FACE


async def _loaded(api: Api, model_id: str, fmt: pb.ModelFormat, arch: str, quant: str) -> None:
    await api.worker.create_base_model(
        WORKER,
        pb.CreateBaseModelRequest(
            id=model_id,
            path=f"models/base-models/{model_id}",
            formats=[fmt],
            gguf_model_path=f"models/base-models/{model_id}/m.gguf" if fmt == GGUF else "",
            source_repository=HF,
            metadata=pb.ModelMetadata(architecture=arch, quantization=quant, parameter_count=7),
        ),
    )


async def _catalogue(api: Api) -> None:
    await _loaded(api, "llama-q4", GGUF, "llama", "Q4_0")
    await _loaded(api, "llama-q8", GGUF, "llama", "Q8_0")
    await _loaded(api, "llama-hf", HUGGING_FACE, "LlamaForCausalLM", "")
    await _loaded(api, "bert", HUGGING_FACE, "BertModel", "")
    await api.request_base("org/loading")  # no metadata yet


async def _ids(api: Api, **filters: Any) -> tuple[list[str], int]:
    page = await api.list(include_loading_models=True, **filters)
    return [m.id for m in page.data], page.total_items


async def test_each_filter_and_their_combination(api: Api) -> None:
    await _catalogue(api)
    assert await _ids(api, format="gguf") == (["llama-q4", "llama-q8"], 2)
    assert await _ids(api, format="MODEL_FORMAT_HUGGING_FACE") == (["bert", "llama-hf"], 2)
    assert await _ids(api, architecture="LLAMA") == (["llama-q4", "llama-q8"], 2)  # any case
    assert await _ids(api, architecture="bertmodel") == (["bert"], 1)
    assert await _ids(api, quantization="q8_0") == (["llama-q8"], 1)
    assert await _ids(api, format="gguf", quantization="q4_0") == (["llama-q4"], 1)
    assert await _ids(api, format="ollama") == ([], 0)
    assert (await _ids(api))[1] == 5  # no filter: everything, the requested model too


async def test_filtered_pages_continue_with_exact_has_more(api: Api) -> None:
    await _catalogue(api)
    first = await api.list(include_loading_models=True, format="hugging-face", limit=1)
    assert ([m.id for m in first.data], first.has_more, first.total_items) == (["bert"], True, 2)
    second = await api.list(include_loading_models=True, format="hugging-face", limit=1, after="bert")
    assert ([m.id for m in second.data], second.has_more) == (["llama-hf"], False)


async def test_a_bad_format_is_refused_naming_the_choices(api: Api) -> None:
    with pytest.raises(InvalidArgument, match=r"format must be one of gguf, hugging-face, nvidia-triton, ollama"):
        await api.list(format="safetensors")


async def test_cached_pages_are_kept_apart_by_filter(ctx: ServiceContext, api: Api) -> None:
    await _catalogue(api)
    service = ModelsService(replace(ctx, cache=ResponseCache()))

    async def ids(**filters: Any) -> list[str]:
        req = pb.ListModelsRequest(include_loading_models=True, **filters)
        body = await service.list_models_encoded(WHO, req, JSON)
        return [m["id"] for m in json.loads(body)["data"]]

    assert await ids(format="gguf") == ["llama-q4", "llama-q8"]
    assert await ids(architecture="bertmodel") == ["bert"]
    assert len(await ids()) == 5


async def test_filters_over_rest(ctx: ServiceContext, api: Api) -> None:
    await _catalogue(api)
    async with rest_client(ctx) as client:
        r = await client.get("/v1/models", params={"format": "gguf", "quantization": "Q4_0"})
        body = await r.json()
        assert [m["id"] for m in body["data"]] == ["llama-q4"] and body["total_items"] == 1
        assert body["data"][0]["metadata"]["quantization"] == "Q4_0"
        r = await client.get("/v1/models", params={"format": "tflite"})
        assert r.status == 400 and "format must be one of" in (await r.json())["message"]


async def test_filters_over_grpc(ctx: ServiceContext, api: Api, grpcio_pb: Any) -> None:
    await _catalogue(api)
    async with grpcio_models(ctx, grpcio_pb) as stub:
        page = await stub.ListModels(grpcio_pb.pb2.ListModelsRequest(architecture="llama", quantization="q8_0"))
        assert [m.id for m in page.data] == ["llama-q8"] and page.total_items == 1
        assert page.data[0].metadata.parameter_count == 7
