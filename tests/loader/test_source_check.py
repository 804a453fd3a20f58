"""Fail-fast requests: CreateModel asks a base model's source first, with the loader's own lookups against the hub
and registry stand-ins over real HTTP. A missing repo, revision, file or tag is refused at once, a gated repo
names the fix, a slow or unreachable source does not block the request, and what the check learnt is recorded."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from grpclib.const import Status

from model_manager.api.status import status_of
from model_manager.config import parse_config
from model_manager.core.errors import NotFound, PermissionDenied, ResourceExhausted
from model_manager.loader.probe import SourceProbe
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from tests.fakes.hub import Hub
from tests.fakes.ollama import Registry
from tests.helpers import HF, OLLAMA, WHO, Api, hf_prefix
from tests.loader.conftest import Harness, harness_config
from tests.loader.test_ollama_s3_failures import _gemma

FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"x" * 3000}


def _probe(registry_url: str, hub: Hub, timeout: float = 5.0) -> SourceProbe:
    return SourceProbe(parse_config(harness_config(registry_url)), timeout, hf_endpoint=hub.url)


async def _create(service: ModelsService, model_id: str, source: pb.SourceRepository, **kw: Any) -> pb.Model:
    return await service.create_model(WHO, pb.CreateModelRequest(id=model_id, source_repository=source, **kw))


async def test_what_the_source_lacks_is_refused_at_once_and_nothing_is_created(
    lctx: ServiceContext, api: Api, hub: Hub, registry: tuple[Registry, str]
) -> None:
    hub.add("org/name", FILES)
    probe = _probe(registry[1], hub)
    service = ModelsService(lctx, probe)
    try:
        cases = [
            ("org/none", HF, r"Hugging Face repo org/none not found \(or private without a valid HF_TOKEN\)"),
            ("org/name@v9", HF, r"revision 'v9' not found in Hugging Face repo org/name"),
            ("org/name/weights.gguf", HF, r"no file 'weights.gguf' in the repo"),
            ("gemma:7b", OLLAMA, r"gemma:7b not found in the Ollama registry"),
        ]
        for model_id, source, message in cases:
            with pytest.raises(NotFound, match=message):
                await _create(service, model_id, source)
        assert (await api.list(include_loading_models=True)).data == []
    finally:
        await probe.close()


async def test_a_gated_repo_is_refused_with_how_to_fix_it(
    lctx: ServiceContext, hub: Hub, registry: tuple[Registry, str]
) -> None:
    hub.add("org/gated", FILES, gated=True, token="secret")
    probe = _probe(registry[1], hub)
    try:
        with pytest.raises(PermissionDenied, match=r"is gated: accept its terms on the Hub .*\(HF_TOKEN\)"):
            await _create(ModelsService(lctx, probe), "org/gated", HF)
    finally:
        await probe.close()


async def test_the_resolved_revision_and_size_are_recorded_and_the_load_uses_that_commit(
    lctx: ServiceContext, api: Api, hub: Hub, registry: tuple[Registry, str]
) -> None:
    repo = hub.add("org/name", FILES)
    reg, url = registry
    reg.add("library", "gemma", "2b", _gemma())
    probe = _probe(url, hub)
    service = ModelsService(lctx, probe)
    try:
        model = await _create(service, "org/name", HF)
        assert model.loading_progress == pb.LoadingProgress(bytes_total=3023, files_total=2)
        assert model.loading_status_message == "found at the source: 3.0 KiB in 2 files; waiting for a loader"
        claim = await api.acquire_base()
        assert claim.revision == repo.commit  # "main" resolved when requested, not when loaded
        ollama = await _create(service, "gemma:2b", OLLAMA)
        assert ollama.loading_progress is not None and ollama.loading_progress.files_total == 5
    finally:
        await probe.close()


async def test_an_unreachable_or_skipped_source_does_not_block_the_request(
    lctx: ServiceContext, hub: Hub, registry: tuple[Registry, str]
) -> None:
    dead = SourceProbe(parse_config(harness_config("http://127.0.0.1:9")), 5.0, hf_endpoint="http://127.0.0.1:9")
    try:
        started = time.monotonic()
        model = await _create(ModelsService(lctx, dead), "gemma:2b", OLLAMA)
        assert model.loading_status == pb.ModelLoadingStatus.REQUESTED and model.loading_progress is None
        assert time.monotonic() - started < 5
    finally:
        await dead.close()
    probe = _probe(registry[1], hub)
    try:
        skipped = await _create(ModelsService(lctx, probe), "org/offline", HF, skip_source_check=True)
        assert skipped.loading_status == pb.ModelLoadingStatus.REQUESTED
        assert hub.repos == {}  # nothing was asked
    finally:
        await probe.close()


async def test_a_tenant_quota_refuses_a_model_that_would_not_fit_with_the_numbers(
    lctx: ServiceContext, api: Api, hub: Hub, registry: tuple[Registry, str]
) -> None:
    hub.add("org/name", FILES)  # 3023 bytes
    hub.add("org/other", FILES)
    ctx = replace(lctx, loading=replace(lctx.loading, max_bytes_per_tenant=5000))
    probe = _probe(registry[1], hub)
    service = ModelsService(ctx, probe)
    try:
        await _create(service, "org/name", HF)
        with pytest.raises(ResourceExhausted) as e:
            await _create(service, "org/other", HF)
        assert e.value.message == (
            "the model needs 3.0 KiB and the tenant's models take 3.0 KiB of its 4.9 KiB quota "
            "(loading.maxBytesPerTenant): delete models or raise the quota"
        )
        assert status_of(e.value) == Status.RESOURCE_EXHAUSTED
        assert [m.id for m in (await api.list(include_loading_models=True)).data] == ["org/name"]
        await service.delete_model(WHO, pb.DeleteModelRequest(id="org/name"))
        await _create(service, "org/other", HF)  # room again
    finally:
        await probe.close()


async def test_the_quota_holds_for_models_accepted_unchecked(harness: Harness, api: Api) -> None:
    """Row 10: skip_source_check skipped the quota. Now an unchecked model's size counts once its loader has listed
    it (before its first byte), a tenant already over its quota is refused at once, and loads from a location
    count the same way."""
    harness.hub.add("org/name", FILES)  # 3023 bytes
    other = harness.hub.add("org/other", FILES)
    harness.hub.add("org/adapter", {"adapter_config.json": b"{}", "adapter_model.safetensors": b"a" * 3000})
    await api.request_base("org/name", skip_source_check=True)
    await harness.drain()
    harness.ctx.loading = replace(harness.ctx.loading, max_bytes_per_tenant=5000)

    await api.request_base("org/other", skip_source_check=True)  # its size is not known yet: accepted
    await api.fine_tuned("org-name", "ft", source=HF, location="org/adapter")
    await harness.drain()
    for model_id in ("org/other", "ft:org-name:ft"):
        failed = await api.get(model_id)
        assert failed.loading_status == pb.ModelLoadingStatus.FAILED, model_id
        assert "of its 4.9 KiB quota (loading.maxBytesPerTenant)" in failed.loading_failure_reason
    assert other.served == 0  # listed, never downloaded
    assert [o.key for o in await harness.store.list_objects("models/")] == [
        f"{hf_prefix('org/name')}/{name}" for name in sorted(FILES)
    ]

    harness.ctx.loading = replace(harness.ctx.loading, max_bytes_per_tenant=3000)  # over it already
    with pytest.raises(ResourceExhausted, match=r"the tenant's models take 3\.0 KiB of its 2\.9 KiB quota"):
        await api.request_base("org/third", skip_source_check=True)
