"""A base model requested with a GGUF conversion, through CreateModel, the loader, the worker API and the hub
stand-in: it ends as two models, the source files and the GGUF beside them, each deletable on its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import pytest

from model_manager.config import parse_config
from model_manager.core.errors import AlreadyExists, InvalidArgument
from model_manager.core.identity import Identity
from model_manager.loader.probe import SourceProbe
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.models import ModelsService
from tests.checkpoints import Checkpoint
from tests.fakes.hub import Hub
from tests.helpers import HF, OLLAMA, OTHER_PROJECT, WHO, WORKER, Api
from tests.loader.conftest import Harness, harness_config


def _request(
    model_id: str, gguf_type: str, source: pb.SourceRepository = HF, scoped: bool = False
) -> pb.CreateModelRequest:
    convert = pb.ConvertOptions(gguf=gguf_type)
    return pb.CreateModelRequest(id=model_id, source_repository=source, convert=convert, is_project_scoped=scoped)


async def _path(api: Api, model_id: str, who: Identity | None = None) -> pb.GetBaseModelPathResponse:
    req = pb.GetBaseModelPathRequest(id=model_id, project_id=who.project_id if who else "")
    return await api.worker.get_base_model_path(WORKER, req)


async def test_a_requested_conversion_ends_as_two_models_each_deletable_alone(
    harness: Harness, api: Api, tmp_path: Path
) -> None:
    harness.hub.add("org/tiny", Checkpoint().files())
    await api.models.create_model(WHO, _request("org/tiny", "q8_0"))
    await harness.drain()

    original, converted = await api.get("org-tiny"), await api.get("org-tiny-q8_0")
    assert original.loading_status == converted.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert list(original.formats) == [pb.ModelFormat.HUGGING_FACE]
    assert list(converted.formats) == [pb.ModelFormat.GGUF]
    assert converted.metadata == pb.ModelMetadata(
        architecture="llama",
        parameter_count=sum(v.size for v in Checkpoint().weights().values()),
        quantization="Q8_0",
        context_length=2048,
        total_bytes=converted.files[0].size,
    )
    where = await _path(api, "org-tiny-q8_0")
    source_dir = (await _path(api, "org-tiny")).path
    assert where.gguf_model_path == f"{source_dir}/org-tiny-q8_0.gguf"  # next to the source files
    data = b"".join([c async for c in harness.store.read(where.gguf_model_path)])
    [file] = converted.files
    assert (file.path, file.size, file.sha256) == ("org-tiny-q8_0.gguf", len(data), hashlib.sha256(data).hexdigest())
    (tmp_path / "m.gguf").write_bytes(data)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert reader.fields["general.architecture"].contents() == "llama"
    assert {t.name for t in reader.tensors} >= {"token_embd.weight", "blk.1.ffn_down.weight", "output.weight"}

    # Deleting the source model keeps the GGUF; deleting the GGUF then leaves nothing.
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org-tiny"))
    keys = [o.key for o in await harness.store.list_objects(source_dir + "/")]
    assert keys == [where.gguf_model_path]
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org-tiny-q8_0"))
    assert await harness.store.list_objects(source_dir + "/") == []


async def test_another_project_reuses_both_the_files_and_the_conversion(harness: Harness, api: Api) -> None:
    files = Checkpoint().files()
    repo = harness.hub.add("org/tiny", files, commit="c" * 40)
    await api.models.create_model(WHO, _request("org/tiny", "q4_0", scoped=True))
    await harness.drain()
    served = repo.served
    converted = await api.get("org-tiny-q4_0")
    gguf_file = (await _path(api, "org-tiny-q4_0", WHO)).gguf_model_path
    written = (await harness.store.stat(gguf_file)) or pytest.fail("no GGUF")

    await api.models.create_model(OTHER_PROJECT, _request("org/tiny", "q4_0", scoped=True))
    await harness.drain()
    assert repo.served - served == len(files["config.json"])  # read to check the architecture; nothing else
    theirs = await api.get("org-tiny-q4_0", OTHER_PROJECT)
    assert theirs.loading_status == pb.ModelLoadingStatus.SUCCEEDED and theirs.files == converted.files
    assert (await _path(api, "org-tiny-q4_0", OTHER_PROJECT)).gguf_model_path == gguf_file
    assert await harness.store.stat(gguf_file) == written  # not converted again


async def test_an_unsupported_architecture_fails_the_load_before_anything_is_stored(harness: Harness, api: Api) -> None:
    repo = harness.hub.add("org/bert", Checkpoint(extra_config={"architectures": ["BertModel"]}).files())
    await api.models.create_model(WHO, _request("org/bert", "f16"))
    await harness.drain()
    failed = await api.get("org/bert")
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED
    assert "architecture 'BertModel'" in failed.loading_failure_reason
    weights = len(Checkpoint().files()["model.safetensors"])
    assert repo.served < weights  # config.json was read; the weights never were


async def test_a_checkpoint_with_a_hostile_header_fails_its_load_naming_the_file(harness: Harness, api: Api) -> None:
    files = Checkpoint().files()
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": "ab"}}'
    files["model.safetensors"] = len(header).to_bytes(8, "little") + header + b"\0" * 16
    harness.hub.add("org/hostile", files)
    await api.models.create_model(WHO, _request("org/hostile", "q8_0"))
    await harness.drain()
    failed = await api.get("org/hostile")
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED
    assert "model.safetensors describes tensor w badly: data_offsets must be" in failed.loading_failure_reason


async def test_bad_conversion_requests_are_refused_at_request_time(harness: Harness, api: Api, hub: Hub) -> None:
    hub.add("org/bert", Checkpoint(extra_config={"architectures": ["BertModel"]}).files())
    hub.add("org/deep", {**Checkpoint().files(), "config.json": b"[" * 200_000 + b"]" * 200_000})
    hub.add("org/tiny", Checkpoint().files())
    probe = SourceProbe(parse_config(harness_config()), 5.0, hf_endpoint=hub.url)
    service = ModelsService(harness.ctx, probe)
    try:
        with pytest.raises(InvalidArgument, match="architecture 'BertModel'; supported: LlamaForCausalLM"):
            await service.create_model(WHO, _request("org/bert", "q8_0"))
        with pytest.raises(InvalidArgument, match=r"config\.json is not JSON"):  # was a RecursionError: 500
            await service.create_model(WHO, _request("org/deep", "q8_0"))
        with pytest.raises(
            InvalidArgument, match=r"convert\.gguf must be one of f32, f16, bf16, q8_0, q4_0, got 'q5_k'"
        ):
            await service.create_model(WHO, _request("org/tiny", "q5_k"))
        with pytest.raises(InvalidArgument, match="Ollama model is stored as GGUF already"):
            await service.create_model(WHO, _request("gemma:2b", "q8_0", OLLAMA))
        assert (await api.list(include_loading_models=True)).data == []
        accepted = await service.create_model(WHO, _request("org/tiny", "q8_0"))
        assert accepted.id == "org/tiny"
        with pytest.raises(AlreadyExists, match='model "org/tiny-q8_0" clashes with model "org/tiny"'):
            # The id the requested conversion will be registered under is taken already.
            clash = pb.CreateModelRequest(id="org/tiny-q8_0", source_repository=HF, skip_source_check=True)
            await service.create_model(WHO, clash)
    finally:
        await probe.close()
