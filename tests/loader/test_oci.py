"""Models to and from OCI registries, through the service and the real loader: a push of a loaded model (its
progress, its artifact as a stock registry holds it, a push cut short and pushed again, refusals), and loads from
oci:// (byte-exact, verified against each layer's digest, shared by manifest digest, clear failures)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from model_manager.config import OciConfig
from model_manager.core import metrics
from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from model_manager.core.identity import Identity, Role
from model_manager.core.oci_ref import parse_oci
from model_manager.loader.sources.oci import OciSource
from model_manager.oci import modelpack
from model_manager.oci.auth import Logins
from model_manager.oci.client import OCI_MANIFEST, Registry
from model_manager.oci.push import ModelPusher
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.pushes import STALE, PushService
from tests.conftest import FakeClock
from tests.fakes.oci_proxy import Front
from tests.fakes.ollama import OllamaModel
from tests.fakes.ollama import Registry as OllamaRegistry
from tests.helpers import OTHER_TENANT, WHO, WORKER, Api
from tests.loader.conftest import Harness, base_path, minilm_files

REPO = "sentence-transformers/all-MiniLM-L6-v2"
LOADED = "sentence-transformers-all-MiniLM-L6-v2"
FILES = minilm_files()
OCI = pb.SourceRepository.OCI
READER = Identity(WHO.tenant_id, WHO.organization_id, WHO.project_id, Role.READER)


def _pushes(harness: Harness, host: str, read: Any = None) -> PushService:
    config = OciConfig(insecure_registries=(host,), chunk_size=8 << 20)
    pusher = ModelPusher(harness.http, config, Logins(config, {}), read or harness.store.read)
    return PushService(harness.ctx, pusher)


async def _finished(pushes: PushService, push_id: str) -> pb.ModelPush:
    await asyncio.gather(*pushes.running)
    return await pushes.get_model_push(WHO, pb.GetModelPushRequest(id=push_id))


@pytest.fixture
async def loaded(any_harness: Harness, api: Api, oci_registry: Any) -> Harness:
    any_harness.hub.add(REPO, FILES)
    any_harness.raw["oci"] = {"insecureRegistries": [oci_registry.host]}
    await api.request_base(REPO)
    await any_harness.drain()
    return any_harness


async def _registered(api: Api, model_id: str) -> None:
    """A loaded base model with one recorded file (whose bytes no test reads: its pushes are held)."""
    request = pb.CreateBaseModelRequest(
        id=model_id,
        path=f"models/base-models/{model_id}",
        formats=[pb.ModelFormat.HUGGING_FACE],
        files=[pb.ModelFile(path="config.json", size=2, sha256="0" * 64)],
    )
    await api.worker.create_base_model(WORKER, request)


def _repo() -> str:
    return f"models/minilm-{uuid.uuid4().hex[:8]}"


async def test_a_pushed_model_is_a_modelpack_artifact_and_loads_back_byte_exact(
    loaded: Harness, api: Api, oci_registry: Any
) -> None:
    pushes = _pushes(loaded, oci_registry.host)
    destination = f"{oci_registry.host}/{_repo()}:v1"
    started = await pushes.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=f"oci://{destination}"))
    assert started.status == pb.PushStatus.PUSHING and started.destination == destination
    stored = (await api.get(LOADED)).files
    assert started.bytes_total == sum(f.size for f in stored) and started.files_total == len(stored)
    done = await _finished(pushes, started.id)
    assert done.status == pb.PushStatus.SUCCEEDED, done.failure_reason
    assert (done.bytes_done, done.files_done, done.bytes_skipped) == (done.bytes_total, len(stored), 0)

    # What the registry holds: the manifest, its config, one raw layer per stored file, digests as recorded.
    registry = Registry(loaded.http, oci_registry.host, insecure=True)
    _, _, rest = destination.partition("/")
    repository, _, tag = rest.rpartition(":")
    manifest = await registry.get_manifest(repository, tag)
    assert manifest.digest == done.manifest_digest
    doc = json.loads(manifest.body)
    assert doc["artifactType"] == modelpack.ARTIFACT_TYPE and doc["mediaType"] == OCI_MANIFEST
    layers = {layer["annotations"][modelpack.FILEPATH]: layer for layer in doc["layers"]}
    assert {p: (layer["digest"], layer["size"]) for p, layer in layers.items()} == {
        f.path: (f"sha256:{f.sha256}", f.size) for f in stored
    }
    assert layers["model.safetensors"]["mediaType"] == modelpack.WEIGHT
    assert layers["config.json"]["mediaType"] == modelpack.WEIGHT_CONFIG
    assert layers["README.md"]["mediaType"] == modelpack.DOC
    assert all(layer["annotations"][modelpack.TITLE] == p for p, layer in layers.items())
    config = json.loads(b"".join([c async for c in registry.read_blob(repository, doc["config"]["digest"])]))
    assert config["config"] == {"architecture": "BertModel", "format": "safetensors", "paramSize": "22.7M",
                                "precision": "fp32"}  # fmt: skip
    assert config["descriptor"]["name"] == LOADED and config["descriptor"]["licenses"] == ["apache-2.0"]
    assert config["modelfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]

    # Loaded back from the registry as another model: the same bytes, and the config's facts where files are silent.
    await api.request_base(destination, OCI)
    await loaded.drain()
    back = await api.get(destination.replace("/", "-"))
    assert back.loading_status == pb.ModelLoadingStatus.SUCCEEDED, back.loading_failure_reason
    assert {f.path: f.sha256 for f in back.files} == {f.path: f.sha256 for f in stored}
    where = await base_path(api, back.id)
    for f in back.files:
        data = b"".join([c async for c in loaded.store.read(f"{where}/{f.path}")])
        assert data == FILES[f.path]
    # The manifest by its digest is the same content: registered from the copy already stored, not copied again.
    await api.request_base(f"{oci_registry.host}/{repository}@{done.manifest_digest}", OCI)
    await loaded.drain()
    pinned = f"{oci_registry.host}/{repository}@{done.manifest_digest}".replace("/", "-")
    assert await base_path(api, pinned) == where

    # A second repository of the registry: every blob is mounted from the first, none is sent.
    sent_before = metrics.PUSHED_BYTES._value.get()
    mirror = await pushes.push_model(
        WHO, pb.PushModelRequest(id=LOADED, destination=f"oci://{oci_registry.host}/{_repo()}:v1")
    )
    mirrored = await _finished(pushes, mirror.id)
    assert mirrored.status == pb.PushStatus.SUCCEEDED and mirrored.manifest_digest == done.manifest_digest
    assert mirrored.bytes_skipped == mirrored.bytes_total
    assert metrics.PUSHED_BYTES._value.get() == sent_before

    original = (await api.get(LOADED)).metadata
    assert original is not None and back.metadata is not None
    assert (back.metadata.architecture, back.metadata.parameter_count) == ("BertModel", original.parameter_count)


async def test_a_push_cut_short_goes_on_from_what_the_registry_holds(loaded: Harness, oci_registry: Any) -> None:
    weights_started = asyncio.Event()

    async def stalled(key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if key.endswith(".safetensors"):
            weights_started.set()
            await asyncio.Event().wait()  # the store never answers: the server shuts down meanwhile
        async for chunk in loaded.store.read(key, offset, length):
            yield chunk

    destination = f"oci://{oci_registry.host}/{_repo()}:v1"
    first = _pushes(loaded, oci_registry.host, stalled)
    started = await first.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=destination))
    await asyncio.wait_for(weights_started.wait(), 30)
    await asyncio.sleep(0.5)  # the small files go up meanwhile
    await first.close()
    cut = await first.get_model_push(WHO, pb.GetModelPushRequest(id=started.id))
    assert cut.status == pb.PushStatus.FAILED and "shut down; push again to go on" in cut.failure_reason

    second = _pushes(loaded, oci_registry.host)
    again = await second.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=destination))
    done = await _finished(second, again.id)
    assert done.status == pb.PushStatus.SUCCEEDED, done.failure_reason
    weights = FILES["model.safetensors"]
    # Everything but the weights was there: not sent again.
    assert done.bytes_skipped >= done.bytes_total - len(weights) - 2 * len(FILES["config.json"])
    assert done.bytes_skipped < done.bytes_total


async def test_pushes_are_refused_with_reasons_and_walled_by_tenant(
    loaded: Harness, api: Api, oci_registry: Any, oci_registry_basic: Any
) -> None:
    pushes = _pushes(loaded, oci_registry.host)
    good = f"oci://{oci_registry.host}/models/x:v1"
    for bad, says in (
        (f"{oci_registry.host}/models/x:v1", "must be an oci:// reference"),
        (f"oci://{oci_registry.host}/Models/x:v1", "lower-case"),
        (f"oci://{oci_registry.host}/models/x@sha256:{'a' * 64}", "a push names a tag"),
        ("oci://no-repository", "expected HOST"),
    ):
        with pytest.raises(InvalidArgument, match=says):
            await pushes.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=bad))
    with pytest.raises(NotFound):
        await pushes.push_model(WHO, pb.PushModelRequest(id="nope", destination=good))
    with pytest.raises(NotFound):  # another tenant's model is not there for this caller
        await pushes.push_model(OTHER_TENANT, pb.PushModelRequest(id=LOADED, destination=good))
    with pytest.raises(PermissionDenied):
        await pushes.push_model(READER, pb.PushModelRequest(id=LOADED, destination=good))
    await api.request_base("org/still-loading")
    with pytest.raises(FailedPrecondition, match="not loaded yet"):
        await pushes.push_model(WHO, pb.PushModelRequest(id="org/still-loading", destination=good))
    with pytest.raises(FailedPrecondition, match="does not push"):
        await PushService(loaded.ctx, None).push_model(WHO, pb.PushModelRequest(id=LOADED, destination=good))

    # A registry the operator did not allow (oci.allowedRegistries): refused before anything is reached.
    walled = replace(loaded.ctx, allowed_registries=("harbor.internal",))
    with pytest.raises(PermissionDenied, match="allowedRegistries"):
        await PushService(walled, pushes.pusher).push_model(WHO, pb.PushModelRequest(id=LOADED, destination=good))
    with pytest.raises(PermissionDenied, match="allowedRegistries"):
        await Api(walled).request_base(f"{oci_registry.host}/models/x:v1", OCI)
    allowed = await PushService(replace(walled, allowed_registries=(oci_registry.host,)), None).list_model_pushes(
        WHO, pb.ListModelPushesRequest()
    )
    assert allowed.data == []  # nothing was recorded by the refusals

    # A registry that wants a login this server does not have: the push fails saying so.
    basic = _pushes(loaded, oci_registry_basic.host)
    denied = await basic.push_model(
        WHO, pb.PushModelRequest(id=LOADED, destination=f"oci://{oci_registry_basic.host}/models/x:v1")
    )
    failed = await _finished(basic, denied.id)
    assert failed.status == pb.PushStatus.FAILED and "none are configured" in failed.failure_reason
    # Another tenant does not see the push.
    with pytest.raises(NotFound):
        await basic.get_model_push(OTHER_TENANT, pb.GetModelPushRequest(id=denied.id))

    # A file gone from the object store: the push fails naming it, not as a broken upload.
    await loaded.store.delete_keys([f"{await base_path(api, LOADED)}/tokenizer.json"])
    lost = await pushes.push_model(
        WHO, pb.PushModelRequest(id=LOADED, destination=f"oci://{oci_registry.host}/{_repo()}:v1")
    )
    gone = await _finished(pushes, lost.id)
    assert gone.status == pb.PushStatus.FAILED
    assert "cannot read" in gone.failure_reason and "tokenizer.json from the object store" in gone.failure_reason


async def test_one_destination_takes_one_push_at_a_time_and_a_silent_one_reads_as_stopped(
    loaded: Harness, api: Api, oci_registry: Any
) -> None:
    await _registered(api, "other-model")
    never = asyncio.Event()

    async def stalled(key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        await never.wait()
        yield b""

    pushes = _pushes(loaded, oci_registry.host, stalled)
    destination = f"oci://{oci_registry.host}/{_repo()}:v1"
    first = await pushes.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=destination))
    same = await pushes.push_model(WHO, pb.PushModelRequest(id=LOADED, destination=destination))
    assert same.id == first.id  # asked twice: the running push answers
    with pytest.raises(FailedPrecondition, match="is being pushed"):
        await pushes.push_model(WHO, pb.PushModelRequest(id="other-model", destination=destination))
    clock = loaded.ctx.clock
    assert isinstance(clock, FakeClock)
    clock.advance(STALE + 1)  # its server stopped without a word
    silent = await pushes.get_model_push(WHO, pb.GetModelPushRequest(id=first.id))
    assert silent.status == pb.PushStatus.FAILED and "push again to go on" in silent.failure_reason
    await pushes.close()


async def test_a_load_from_oci_checks_every_blob_and_names_what_is_wrong(
    harness: Harness, api: Api, oci_registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    harness.raw["oci"] = {"insecureRegistries": [oci_registry.host]}
    registry = Registry(harness.http, oci_registry.host, insecure=True)
    repo = _repo()
    files = {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "model.safetensors": b"\x00" * 4096}
    layers = []
    for path, data in files.items():
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        await registry.push_blob(repo, digest, len(data), _reader(data), lambda n: None)
        layers.append(modelpack.Layer(path, len(data), digest))
    config = b"{}"
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    await registry.push_blob(repo, config_digest, len(config), _reader(config), lambda n: None)
    good = modelpack.manifest(config, config_digest, layers, {})
    await registry.put_manifest(repo, "v1", good, OCI_MANIFEST)
    # An image manifest whose layers name no files (as Ollama's registry writes them) is not a model to load.
    anonymous = json.loads(good)
    for layer in anonymous["layers"]:
        layer.pop("annotations")
    await registry.put_manifest(repo, "plain", json.dumps(anonymous).encode(), OCI_MANIFEST)

    # The registry's copy of the weights goes bad on its disk: the load fails on the digest.
    weights = layers[1].digest.removeprefix("sha256:")
    pattern = f"blobs/sha256/{weights[:2]}/{weights}/data"
    [blob] = await asyncio.to_thread(lambda: list(Path(oci_registry.directory).rglob(pattern)))
    await asyncio.to_thread(blob.write_bytes, b"\x01" * 4096)
    try:
        await api.request_base(f"{oci_registry.host}/{repo}:v1", OCI)
        await api.request_base(f"{oci_registry.host}/{repo}:plain", OCI)
        await api.request_base(f"{oci_registry.host}/{repo}:missing", OCI)
        await harness.drain()
    finally:
        await asyncio.to_thread(blob.write_bytes, files["model.safetensors"])
    bad = await api.get(f"{oci_registry.host}/{repo}:v1")
    assert bad.loading_status == pb.ModelLoadingStatus.FAILED and "sha256" in bad.loading_failure_reason
    plain = await api.get(f"{oci_registry.host}/{repo}:plain")
    assert "names no file path" in plain.loading_failure_reason and "OLLAMA" in plain.loading_failure_reason
    missing = await api.get(f"{oci_registry.host}/{repo}:missing")
    assert "no such tag" in missing.loading_failure_reason
    with pytest.raises(InvalidArgument, match="repository"):
        await api.request_base(f"{oci_registry.host}/Bad/Repo:v1", OCI)


def _reader(data: bytes) -> Any:
    async def read(offset: int, length: int) -> AsyncIterator[bytes]:
        yield data[offset : offset + length]

    return read


async def test_an_ollama_model_goes_through_a_stock_registry_in_the_runtime_layout(
    harness: Harness, api: Api, registry: tuple[OllamaRegistry, str], oci_registry: Any
) -> None:
    """What Ollama's own registry dialect cannot do: an Ollama model pushed to a stock registry and loaded back,
    still in the layout an Ollama runtime reads (manifests/... and blobs/sha256-...)."""
    reg, _ = registry
    harness.raw["oci"] = {"insecureRegistries": [oci_registry.host]}
    gemma = OllamaModel(
        config=b'{"model_format": "gguf", "model_family": "gemma"}',
        layers=[
            ("application/vnd.ollama.image.model", b"GGUF" + bytes(range(256)) * 64),
            ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
        ],
    )
    reg.add("library", "gemma", "2b", gemma)
    await api.request_base("gemma:2b", pb.SourceRepository.OLLAMA)
    await harness.drain()
    pushes = _pushes(harness, oci_registry.host)
    destination = f"{oci_registry.host}/{_repo()}:2b"
    push = await pushes.push_model(WHO, pb.PushModelRequest(id="gemma:2b", destination=f"oci://{destination}"))
    assert (await _finished(pushes, push.id)).status == pb.PushStatus.SUCCEEDED
    await api.request_base(destination, OCI)
    await harness.drain()
    back = await api.get(destination.replace("/", "-"))
    assert back.loading_status == pb.ModelLoadingStatus.SUCCEEDED, back.loading_failure_reason
    assert back.formats == [pb.ModelFormat.OLLAMA]
    original = await api.get("gemma:2b")
    assert {f.path: f.sha256 for f in back.files} == {f.path: f.sha256 for f in original.files}
    assert any(f.path.startswith("manifests/") for f in back.files)


async def test_a_blob_download_cut_short_goes_on_with_a_range(harness: Harness, api: Api, oci_registry: Any) -> None:
    """The registry's connection dies 1 MiB into the weights: the loader asks for the rest (`Range: bytes=N-`) and
    the file it stores is whole and verified."""
    front = Front(oci_registry.host, cut_blobs_after=1 << 20, cuts=1)
    server = TestServer(front.app(), host="127.0.0.1")
    await server.start_server()
    try:
        host = f"127.0.0.1:{server.port}"
        harness.raw["oci"] = {"insecureRegistries": [host]}
        registry = Registry(harness.http, host, insecure=True)
        repo = _repo()
        weights = hashlib.sha256(b"w").digest() * (3 << 15)  # 3 MiB
        digest = "sha256:" + hashlib.sha256(weights).hexdigest()
        await registry.push_blob(repo, digest, len(weights), _reader(weights), lambda n: None)
        config = b"{}"
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        await registry.push_blob(repo, config_digest, len(config), _reader(config), lambda n: None)
        layers = [
            modelpack.Layer("config.json", len(config), config_digest),  # the same bytes as the config blob
            modelpack.Layer("model.safetensors", len(weights), digest),
        ]
        await registry.put_manifest(repo, "v1", modelpack.manifest(config, config_digest, layers, {}), OCI_MANIFEST)
        await api.request_base(f"{host}/{repo}:v1", OCI)
        await harness.drain()
        model = await api.get(f"{host}/{repo}:v1".replace("/", "-"))
        assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED, model.loading_failure_reason
        where = await base_path(api, model.id)
        assert b"".join([c async for c in harness.store.read(f"{where}/model.safetensors")]) == weights
        assert len(front.ranges) >= 3  # the config.json layer, the cut download, the whole one
        source = OciSource(registry, parse_oci(f"{host}/{repo}:v1"))
        [_, remote] = await source.list_files()
        rest = b"".join([c async for c in source.open(remote, 1 << 20)])
        assert rest == weights[1 << 20 :] and front.ranges[-1] == f"bytes={1 << 20}-"
    finally:
        await server.close()


async def test_a_fine_tuned_adapter_is_pushed_like_a_base_model(harness: Harness, api: Api, oci_registry: Any) -> None:
    adapter = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x08\x00" * 4096}
    harness.hub.add("org/my-adapter", adapter)
    await api.loaded_base("base")
    created = await api.fine_tuned("base", "tuned", source=pb.SourceRepository.HUGGING_FACE, location="org/my-adapter")
    await harness.drain()
    pushes = _pushes(harness, oci_registry.host)
    destination = f"{oci_registry.host}/{_repo()}:tuned"
    push = await pushes.push_model(WHO, pb.PushModelRequest(id=created.id, destination=f"oci://{destination}"))
    done = await _finished(pushes, push.id)
    assert done.status == pb.PushStatus.SUCCEEDED, done.failure_reason
    registry = Registry(harness.http, oci_registry.host, insecure=True)
    repository, _, tag = destination.partition("/")[2].rpartition(":")
    layers = modelpack.read_manifest((await registry.get_manifest(repository, tag)).body, OCI_MANIFEST).layers
    for layer in layers:
        assert b"".join([c async for c in registry.read_blob(repository, layer.digest)]) == adapter[layer.path]
    assert sorted(x.path for x in layers) == sorted(adapter)


async def test_pushes_are_listed_as_their_callers_see_them(harness: Harness, api: Api, oci_registry: Any) -> None:
    never = asyncio.Event()

    async def stalled(key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        await never.wait()
        yield b""

    for model_id in ("m1", "m2"):
        await _registered(api, model_id)
    pushes = _pushes(harness, oci_registry.host, stalled)
    made = [
        await pushes.push_model(WHO, pb.PushModelRequest(id=m, destination=f"oci://{oci_registry.host}/{_repo()}:v1"))
        for m in ("m1", "m2", "m1")
    ]
    listed = await pushes.list_model_pushes(WHO, pb.ListModelPushesRequest())
    assert {p.id for p in listed.data} == {p.id for p in made} and listed.object == "list"
    only_m1 = await pushes.list_model_pushes(WHO, pb.ListModelPushesRequest(model_id="m1"))
    assert {p.id for p in only_m1.data} == {made[0].id, made[2].id}
    assert len((await pushes.list_model_pushes(WHO, pb.ListModelPushesRequest(limit=1))).data) == 1
    assert (await pushes.list_model_pushes(OTHER_TENANT, pb.ListModelPushesRequest())).data == []
    with pytest.raises(InvalidArgument, match="limit"):
        await pushes.list_model_pushes(WHO, pb.ListModelPushesRequest(limit=1000))
    await pushes.close()
    closed = await pushes.list_model_pushes(WHO, pb.ListModelPushesRequest())
    assert all(p.status == pb.PushStatus.FAILED and "shut down" in p.failure_reason for p in closed.data)
