"""Metadata through a real load (the loader in process, the hub stand-in over HTTP, real files): what the files'
headers say is registered with the model and returned on it, for a Hugging Face repo, each model of a repo of
GGUF files, and a fine-tuned adapter."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from model_manager.proto.llmariner.models.server import v1 as pb
from tests.helpers import HF, Api
from tests.loader.conftest import Harness, minilm_files, tiny_gguf


def _safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, data, at = {}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        data, at = data + raw, at + len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


async def test_a_hugging_face_model_is_registered_with_what_its_files_say(harness: Harness, api: Api) -> None:
    files = minilm_files()
    harness.hub.add("sentence-transformers/all-MiniLM-L6-v2", files)
    await api.request_base("sentence-transformers/all-MiniLM-L6-v2")
    await harness.drain()
    meta = (await api.get("sentence-transformers-all-MiniLM-L6-v2", loading=False)).metadata
    assert meta is not None
    assert (meta.architecture, meta.dtype, meta.context_length, meta.license) == ("BertModel", "F32", 512, "apache-2.0")
    assert 22_700_000 < meta.parameter_count < 22_800_000
    assert meta.total_bytes == sum(len(d) for d in files.values())


async def test_each_gguf_file_of_a_repo_is_described_as_its_own_model(
    harness: Harness, api: Api, tmp_path: Path
) -> None:
    small, large = tiny_gguf(tmp_path, "a.gguf", 1), tiny_gguf(tmp_path, "b.gguf", 2)
    harness.hub.add("org/multi", {"small.gguf": small, "large.gguf": large})
    await api.request_base("org/multi")
    await harness.drain()
    meta = (await api.get("org-multi-small", loading=False)).metadata
    assert meta is not None
    assert (meta.architecture, meta.parameter_count, meta.quantization, meta.total_bytes) == (
        "llama",
        256,
        "F32",
        len(small),
    )


async def test_a_fine_tuned_adapter_reports_what_it_is_with_its_success(harness: Harness, api: Api) -> None:
    adapter = _safetensors({"lora_A": ("F16", [8, 16], b"\0" * 256), "lora_B": ("F16", [16, 8], b"\0" * 256)})
    harness.hub.add("org/my-adapter", {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": adapter})
    await api.loaded_base("base")
    created = await api.fine_tuned("base", "tuned", source=HF, location="org/my-adapter")
    await harness.drain()
    model = await api.get(created.id, loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert model.metadata is not None
    assert (model.metadata.parameter_count, model.metadata.dtype) == (256, "F16")
    assert model.metadata.total_bytes == len(adapter) + len(b'{"r": 8}')
