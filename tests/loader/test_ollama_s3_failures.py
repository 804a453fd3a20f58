"""Ollama, S3 sources and the S3 store, fine-tuned models, and failures that must leave nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

import boto3
import pytest
from grpclib import GRPCError
from grpclib.const import Status

from model_manager.core.errors import NotFound, PermissionDenied
from model_manager.loader.retry import RetryPolicy
from model_manager.objectstore.s3 import S3Store
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.models import ModelsService
from tests.fakes.ollama import OllamaModel, Registry
from tests.helpers import HF, OBJECT_STORE, OLLAMA, WHO, WORKER, Api, hf_prefix
from tests.loader.conftest import Harness, base_path, minilm_files
from tests.objects import get

PREFIX = "models/base-models"


def _gemma() -> OllamaModel:
    return OllamaModel(
        config=b'{"model_format": "gguf", "model_family": "gemma"}',
        layers=[
            ("application/vnd.ollama.image.model", b"GGUF" + bytes(range(256)) * 64),
            ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
            ("application/vnd.ollama.image.params", b'{"stop": ["<end>"]}'),
        ],
    )


async def test_ollama_model_in_the_runtime_layout(harness: Harness, api: Api, registry: tuple[Registry, str]) -> None:
    reg, url = registry
    gemma = _gemma()
    reg.add("library", "gemma", "2b", gemma)
    await api.request_base("gemma:2b", OLLAMA)
    await harness.drain()
    model = await api.get("gemma:2b", loading=False)
    assert (model.loading_status, model.formats) == (pb.ModelLoadingStatus.SUCCEEDED, [pb.ModelFormat.OLLAMA])
    host = url.removeprefix("http://")
    prefix = await base_path(api, "gemma:2b")
    assert prefix.startswith(f"{PREFIX}/gemma-2b@")
    assert await get(harness.store, f"{prefix}/manifests/{host}/library/gemma/2b") == gemma.manifest()
    for _, data in [("config", gemma.config), *gemma.layers]:
        assert await get(harness.store, f"{prefix}/blobs/sha256-{hashlib.sha256(data).hexdigest()}") == data
    assert reg.accepts == ["application/vnd.docker.distribution.manifest.v2+json"]
    assert model.revision == "sha256:" + hashlib.sha256(gemma.manifest()).hexdigest()


async def test_ollama_corrupt_blob_fails_and_leaves_nothing(
    harness: Harness, api: Api, registry: tuple[Registry, str]
) -> None:
    reg, _ = registry
    bad = _gemma()
    bad.corrupt = {0}
    reg.add("library", "bad", "latest", bad)
    await api.request_base("bad:latest", OLLAMA)
    await harness.drain()
    model = await api.get("bad:latest")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert (
        "sha256 mismatch" in model.loading_failure_reason
        and "Ollama model library/bad:latest" in model.loading_failure_reason
    )
    assert await harness.store.list_objects(PREFIX) == []


async def test_unknown_ollama_model_fails(harness: Harness, api: Api) -> None:
    await api.request_base("nothing:7b", OLLAMA)
    await harness.drain()
    reason = (await api.get("nothing:7b")).loading_failure_reason
    assert "not found in the Ollama registry" in reason
    assert "127.0.0.1" not in reason  # the registry's address is the operator's business


async def test_hash_mismatch_fails_and_leaves_nothing(harness: Harness, api: Api) -> None:
    harness.hub.add(
        "org/tampered",
        {"config.json": b"{}", "model.safetensors": b"x" * 5000},
        published_sha256={"model.safetensors": "0" * 64},
    )
    await api.request_base("org/tampered")
    await harness.drain()
    model = await api.get("org/tampered")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert "model.safetensors" in model.loading_failure_reason and "sha256 mismatch" in model.loading_failure_reason
    assert await harness.store.list_objects(PREFIX) == []


async def test_a_source_that_dies_mid_file_once_is_retried(harness: Harness, api: Api) -> None:
    data = bytes(range(256)) * 2048
    repo = harness.hub.add(
        "org/flaky",
        {"config.json": b"{}", "model.safetensors": data},
        die_after={"model.safetensors": 100_000},
        die_times={"model.safetensors": 1},
    )
    await api.request_base("org/flaky")
    await harness.drain()
    assert (await api.get("org-flaky")).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert await get(harness.store, f"{hf_prefix('org/flaky')}/model.safetensors") == data
    assert len([r for r in repo.requests if r.endswith("model.safetensors")]) == 2


async def test_a_listing_that_fails_transiently_is_retried(
    harness: Harness, api: Api, registry: tuple[Registry, str]
) -> None:
    reg, _ = registry
    reg.add("library", "busy", "1b", _gemma())
    reg.fail_manifests = 2
    await api.request_base("busy:1b", OLLAMA)
    await harness.drain()
    assert (await api.get("busy:1b")).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert len(reg.accepts) == 3


async def test_a_source_outage_is_retried_later_then_fails_naming_the_file(harness: Harness, api: Api) -> None:
    harness.hub.add(
        "org/dead",
        {"config.json": b"{}", "model.safetensors": b"y" * 300_000},
        die_after={"model.safetensors": 70_000},
        die_times={"model.safetensors": 99},
    )
    await api.request_base("org/dead")
    clock = harness.ctx.clock
    for attempt, delay in ((1, 30), (2, 60)):
        await harness.drain()
        model = await api.get("org/dead")
        # Given back, not failed: an outage may end. Not claimed again before its delay has passed.
        assert model.loading_status == pb.ModelLoadingStatus.REQUESTED, model
        assert model.loading_status_message.startswith(f"attempt {attempt} failed: Hugging Face repo org/dead: ")
        assert f"trying again in {delay} s" in model.loading_status_message
        assert not (await api.acquire_base("eager")).base_model_id
        clock.advance(delay)  # type: ignore[attr-defined]
    await harness.drain()
    model = await api.get("org/dead")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    reason = model.loading_failure_reason
    assert reason.startswith("Hugging Face repo org/dead: model.safetensors: ") and reason.count("org/dead") == 1, (
        reason
    )
    assert "gave up after 3 attempts" in model.loading_failure_reason
    assert model.loading_status_message == ""
    # What the attempts stored stays for a retry to continue from; deleting the model removes it.
    assert [o.key for o in await harness.store.list_objects(PREFIX)] == [f"{hf_prefix('org/dead')}/config.json"]
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/dead"))
    assert await harness.store.list_objects(PREFIX) == []
    assert await harness.store.clear_unfinished(PREFIX) == 0


async def test_progress_is_reported_while_loading(harness: Harness, api: Api) -> None:
    harness.hub.add("org/slow", {"config.json": b"{}", "model.safetensors": b"z" * (64 * 1024 * 12)}, throttle=0.05)
    await api.request_base("org/slow")
    task = asyncio.create_task(harness.drain())
    messages: set[str] = set()
    while not task.done():
        try:
            messages.add((await api.get("org/slow")).loading_status_message)
        except NotFound:  # loaded: the requested row made way for org-slow
            break
        await asyncio.sleep(0.05)
    await task
    assert any(m.startswith("downloaded ") and "files)" in m and "/s" in m for m in messages), messages


async def test_a_loader_that_lost_its_lease_stops_and_leaves_the_keys_to_the_new_holder(
    harness: Harness, api: Api
) -> None:
    files = {"config.json": b"{}", "model.safetensors": b"q" * (64 * 1024 * 50)}
    harness.hub.add("org/contested", files, throttle=0.05)
    await api.request_base("org/contested")
    task = asyncio.create_task(harness.drain())
    while (await api.get("org/contested")).loading_status != pb.ModelLoadingStatus.LOADING:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    # Another loader takes the model over after the first one's lease expired. The first one's progress report
    # may renew its lease between the clock's jump and the claim, so jump again until the claim wins. The first
    # loader, having lost its claim, may also claim the model again before loader-2 does (attempt 2, then 3).
    for _ in range(20):
        harness.ctx.clock.advance(3600)  # type: ignore[attr-defined]
        takeover = await api.acquire_base("loader-2")
        if takeover.base_model_id:
            break
        await asyncio.sleep(0.01)
    assert takeover.base_model_id == "org/contested" and takeover.attempt >= 2
    await asyncio.wait_for(task, 10)
    model = await api.get("org/contested")
    assert model.loading_status == pb.ModelLoadingStatus.LOADING  # still the new holder's; nothing overwritten
    # The keys belong to the new holder now, which may already have written them: the stale loader deletes none
    # of them. What it had half written is the file's true beginning, for the new holder to continue.
    for o in await harness.store.list_objects(PREFIX):
        assert await get(harness.store, o.key) == files[o.key.rsplit("/", 1)[1]]
    half = await harness.store.partial(f"{hf_prefix('org/contested')}/model.safetensors")
    if half is not None:
        written = b"".join([c async for c in harness.store.read_partial(half)])
        assert written == files["model.safetensors"][: len(written)]


async def test_a_model_deleted_while_it_loads_does_not_come_back(harness: Harness, api: Api) -> None:
    harness.hub.add("org/doomed", {"config.json": b"{}", "model.safetensors": b"d" * (64 * 1024 * 12)}, throttle=0.05)
    await api.request_base("org/doomed")
    task = asyncio.create_task(harness.drain())
    while (await api.get("org/doomed")).loading_status != pb.ModelLoadingStatus.LOADING:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/doomed"))
    await asyncio.wait_for(task, 10)
    for model_id in ("org/doomed", "org-doomed"):
        with pytest.raises(NotFound):
            await api.get(model_id)
    assert await harness.store.list_objects(PREFIX) == []


# ---- fine-tuned models ------------------------------------------------------------------------------------


async def test_fine_tuned_from_hugging_face_into_its_dest_path(harness: Harness, api: Api) -> None:
    files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"a" * 4096}
    harness.hub.add("org/my-adapter", files)
    await api.loaded_base("base")
    created = await api.fine_tuned("base", "tuned", source=HF, location="org/my-adapter")
    await harness.drain()
    model = await api.get(created.id, loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    dest = f"models/{WHO.tenant_id}/{WHO.project_id}/{created.id}"
    assert {f.path for f in model.files} == set(files)
    for name, data in files.items():
        assert await get(harness.store, f"{dest}/{name}") == data


# ---- S3: as the store, and as a source --------------------------------------------------------------------


async def test_real_model_into_s3_with_multipart_uploads(s3_harness: Harness, api: Api) -> None:
    files = minilm_files()
    assert max(len(d) for d in files.values()) > 5 * 1024 * 1024 * 3  # the weights need several parts
    s3_harness.hub.add("sentence-transformers/all-MiniLM-L6-v2", files)
    await api.request_base("sentence-transformers/all-MiniLM-L6-v2")
    await s3_harness.drain()
    assert (await api.get("sentence-transformers-all-MiniLM-L6-v2")).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    prefix = hf_prefix("sentence-transformers/all-MiniLM-L6-v2")
    for name, data in files.items():
        assert await get(s3_harness.store, f"{prefix}/{name}") == data, name
    head = boto3.client("s3", endpoint_url=s3_harness.raw["objectStore"]["s3"]["endpointUrl"], region_name="us-east-1")
    bucket = s3_harness.raw["objectStore"]["s3"]["bucket"]
    etag = head.head_object(Bucket=bucket, Key=f"{prefix}/model.safetensors")["ETag"]
    assert "-" in etag  # a multipart object's ETag carries its part count


async def test_a_source_that_dies_in_the_middle_of_a_multipart_upload_is_retried(s3_harness: Harness, api: Api) -> None:
    # The failure surfaces inside the upload's task group; it must still be seen as the transient source error.
    big = bytes(range(256)) * (4096 * 20)  # 20 MiB: four 5 MiB parts
    repo = s3_harness.hub.add(
        "org/flaky-big",
        {"config.json": b"{}", "model.safetensors": big},
        die_after={"model.safetensors": 12 * 1024 * 1024},
        die_times={"model.safetensors": 1},
    )
    await api.request_base("org/flaky-big")
    await s3_harness.drain()
    assert (await api.get("org-flaky-big")).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert await get(s3_harness.store, f"{hf_prefix('org/flaky-big')}/model.safetensors") == big
    assert len([r for r in repo.requests if r.endswith("model.safetensors")]) == 2


async def test_a_source_that_always_breaks_off_mid_file_still_gets_it_across_into_s3(
    s3_harness: Harness, api: Api, s3_endpoint: str, s3_bucket: str
) -> None:
    """Every download is cut after 12 MiB; each try continues after the parts stored so far (a Range request)."""
    big = bytes(range(256)) * (4096 * 20)  # 20 MiB: four parts
    repo = s3_harness.hub.add(
        "org/cut",
        {"config.json": b"{}", "model.safetensors": big},
        die_after={"model.safetensors": 12 * 1024 * 1024},
        die_times={"model.safetensors": 99},
    )
    await api.request_base("org/cut")
    await s3_harness.drain()
    model = await api.get("org-cut", loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert await get(s3_harness.store, f"{hf_prefix('org/cut')}/model.safetensors") == big
    assert {f.path: f.sha256 for f in model.files}["model.safetensors"] == hashlib.sha256(big).hexdigest()
    assert repo.served < 2 * len(big)  # from the start each time, three tries would have sent 36 MiB for nothing
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert client.list_multipart_uploads(Bucket=s3_bucket, Prefix=PREFIX).get("Uploads", []) == []


async def test_a_load_into_s3_that_failed_keeps_its_parts_for_the_next_attempt_until_deleted(
    s3_harness: Harness, api: Api, s3_endpoint: str, s3_bucket: str
) -> None:
    big = bytes(range(256)) * (4096 * 20)  # 20 MiB: four parts
    s3_harness.hub.add(
        "org/broken",
        {"config.json": b"{}", "model.safetensors": big},
        die_after={"model.safetensors": 12 * 1024 * 1024},
        die_times={"model.safetensors": 99},
    )
    s3_harness.retry = RetryPolicy(max_attempts=1)  # the attempt ends at the first cut
    await api.request_base("org/broken")
    await s3_harness.drain()
    # A source outage: given back for a later attempt, which continues from the parts this one stored.
    assert (await api.get("org/broken")).loading_status == pb.ModelLoadingStatus.REQUESTED
    store = s3_harness.store
    assert isinstance(store, S3Store)
    assert store.budget.in_use == 0  # every part buffer was given back
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    (upload,) = client.list_multipart_uploads(Bucket=s3_bucket, Prefix=PREFIX)["Uploads"]
    assert upload["Key"] == f"{hf_prefix('org/broken')}/model.safetensors"
    resumable = await store.partial(upload["Key"])
    assert resumable is not None and resumable.size >= store.part_size
    # Deleted, the model takes its stored files and open uploads along.
    await ModelsService(replace(api.ctx, objects=store)).delete_model(WHO, pb.DeleteModelRequest(id="org/broken"))
    assert await store.list_objects(PREFIX) == []
    assert client.list_multipart_uploads(Bucket=s3_bucket, Prefix=PREFIX).get("Uploads", []) == []


async def _source_bucket(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


async def test_base_model_mirrored_from_a_source_bucket(
    harness: Harness, api: Api, s3_endpoint: str, s3_bucket: str
) -> None:
    files = {"config.json": b"{}", "model.safetensors": b"m" * 10_000}
    await _source_bucket(s3_endpoint, s3_bucket, {f"mirror/my-model/{k}": v for k, v in files.items()})
    harness.raw["loader"]["downloader"] = {
        "kind": "s3",
        "s3": {"endpointUrl": s3_endpoint, "region": "us-east-1", "bucket": s3_bucket, "pathPrefix": "mirror"},
    }
    await api.request_base("my-model", OBJECT_STORE)
    await harness.drain()
    model = await api.get("my-model", loading=False)
    assert model.formats == [pb.ModelFormat.HUGGING_FACE]
    prefix = await base_path(api, "my-model")
    assert prefix.startswith(f"{PREFIX}/my-model@")  # the revision of a bucket prefix: a digest of its etags
    for name, data in files.items():
        assert await get(harness.store, f"{prefix}/{name}") == data


async def test_fine_tuned_from_an_s3_location(harness: Harness, api: Api, s3_endpoint: str, s3_bucket: str) -> None:
    files = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"t" * 777}
    await _source_bucket(s3_endpoint, s3_bucket, {f"jobs/run-1/output/{k}": v for k, v in files.items()})
    harness.raw["loader"]["downloader"] = {"s3": {"endpointUrl": s3_endpoint, "region": "us-east-1", "bucket": "other"}}
    await api.loaded_base("base")
    location = f"s3://{s3_bucket}/jobs/run-1/output"
    with pytest.raises(PermissionDenied, match=f"bucket '{s3_bucket}' is not one models may be loaded from"):
        await api.fine_tuned("base", "run-1", location=location)
    api.ctx.loading = replace(api.ctx.loading, allowed_source_buckets=(f"{s3_bucket}/jobs",))
    created = await api.fine_tuned("base", "run-1", location=location)
    await harness.drain()
    model = await api.get(created.id, loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    path = (await api.worker.get_model_path(WORKER, pb.GetModelPathRequest(id=created.id))).path
    assert path == f"models/{WHO.tenant_id}/{WHO.project_id}/{created.id}"
    for name, data in files.items():
        assert await get(harness.store, f"{path}/{name}") == data


async def test_a_failed_claim_does_not_stop_the_loader(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """An error answer to a claim (the server's database refused it, say) is logged and the loader carries on:
    the next poll claims and loads the model."""
    harness.hub.add("org/m", {"config.json": b"{}"})
    await Api(harness.ctx).request_base("org/m")
    loop = harness.loop(modelLoadInterval="50ms")
    real = loop.worker.acquire_unloaded_base_model
    calls = 0

    async def flaky(message: pb.AcquireUnloadedBaseModelRequest) -> pb.AcquireUnloadedBaseModelResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise GRPCError(Status.UNKNOWN, "Internal Server Error")
        return await real(message)

    loop.worker.acquire_unloaded_base_model = flaky  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    loaded = False
    for _ in range(200):
        try:
            loaded = bool(await Api(harness.ctx).get("org-m", loading=False))
            break
        except NotFound:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert loaded and calls > 1 and "worker API error while claiming models" in caplog.text
