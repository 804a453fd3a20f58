"""Model metadata read from real files' leading bytes as they stream past: all-MiniLM-L6-v2's own files and GGUF
files written by the gguf package (llama.cpp's own writer)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from model_manager.core.push import ModelFacts
from model_manager.loader.metadata import MetadataReader
from model_manager.oci import modelpack
from tests.loader.conftest import minilm_files


def _stream(reader: MetadataReader, files: dict[str, bytes], block: int = 4 << 20) -> int:
    """Feed every file in blocks, as the loader's transfer does; the total size."""
    for path, data in files.items():
        watcher = reader.watch(path)
        for at in range(0, len(data), block):
            watcher.feed(data[at : at + block])
        watcher.close()
    return sum(len(d) for d in files.values())


def test_a_hugging_face_model_from_config_safetensors_and_card() -> None:
    files = minilm_files()
    reader = MetadataReader()
    total = _stream(reader, files, block=65536)
    meta = reader.message(total)
    config = json.loads(files["config.json"])
    assert meta.architecture == config["architectures"][0] == "BertModel"
    assert meta.context_length == config["max_position_embeddings"] == 512
    assert meta.dtype == "F32"
    n = int.from_bytes(files["model.safetensors"][:8], "little")
    shapes = [t["shape"] for k, t in json.loads(files["model.safetensors"][8 : 8 + n]).items() if k != "__metadata__"]
    assert meta.parameter_count == sum(int(np.prod(s)) for s in shapes)
    assert 22_700_000 < meta.parameter_count < 22_800_000  # the model card's "22.7M parameters"
    assert meta.license == "apache-2.0"
    assert meta.total_bytes == total and meta.quantization == ""


def _gguf(tmp: Path, name: str, ftype: type, vocab: int = 50_000) -> bytes:
    path = tmp / name
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(4096)
    w.add_block_count(1)
    w.add_license("mit")
    w.add_token_list([f"token{i}" for i in range(vocab)])  # a vocabulary makes the header span several blocks
    w.add_tensor("token_embd.weight", np.ones((64, 32), dtype=ftype))
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_gguf_headers_are_read_across_blocks_and_each_file_is_its_own_model(tmp_path: Path) -> None:
    f16, f32 = _gguf(tmp_path, "m-f16.gguf", np.float16), _gguf(tmp_path, "m-f32.gguf", np.float32, vocab=10)
    assert len(f16) > 300_000  # the header alone needs several of the blocks below
    reader = MetadataReader()
    _stream(reader, {"m-f16.gguf": f16, "m-f32.gguf": f32}, block=65536)
    one = reader.message(len(f16), gguf_file="m-f16.gguf")
    assert (one.architecture, one.parameter_count, one.quantization) == ("llama", 64 * 32 + 32, "F16")
    assert (one.context_length, one.license, one.total_bytes) == (4096, "mit", len(f16))
    assert reader.message(len(f32), gguf_file="m-f32.gguf").quantization == "F32"


def test_an_ollama_model_from_its_gguf_blob_and_config_blob(tmp_path: Path) -> None:
    blob = _gguf(tmp_path, "blob", np.float16, vocab=100)
    config = b'{"model_format": "gguf", "model_family": "gemma", "file_type": "Q4_0"}'
    reader = MetadataReader()
    _stream(reader, {"manifests/r/library/m/t": b'{"layers": []}', "blobs/sha256-a": blob, "blobs/sha256-b": config})
    meta = reader.message(len(blob) + len(config))
    assert (meta.architecture, meta.quantization, meta.parameter_count) == ("llama", "F16", 64 * 32 + 32)
    only_config = MetadataReader()
    _stream(only_config, {"blobs/sha256-b": config, "blobs/sha256-c": b"{{ .Prompt }}"})
    assert (only_config.message(0).architecture, only_config.message(0).quantization) == ("gemma", "Q4_0")


def test_what_is_not_a_header_says_nothing_and_keeps_no_bytes() -> None:
    reader = MetadataReader()
    watcher = reader.watch("model.safetensors")
    watcher.feed(b"\xff" * 16)  # a header length far past the cap
    assert watcher.done and not watcher.buffer
    weights = reader.watch("blobs/sha256-x")
    weights.feed(b"\x00" * (1 << 20))
    assert weights.done and not weights.buffer
    broken = reader.watch("config.json")
    broken.feed(b"{not json")
    broken.close()
    assert reader.message(0).architecture == ""


def _safetensors(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + b"\0" * 64


def test_hostile_headers_and_configs_say_nothing_and_never_raise() -> None:
    """A header nested 200,000 deep (the standard library's parser recursed until RecursionError), one that is a
    list, and tensors described with strings: the file tells nothing and the transfer goes on."""
    deep = b"[" * 200_000 + b"]" * 200_000
    hostile = {
        "model.safetensors": _safetensors(b'{"a": ' + deep + b"}"),
        "model-00001-of-00002.safetensors": _safetensors(b"[1, 2]"),
        "model-00002-of-00002.safetensors": _safetensors(b'{"w": {"dtype": "F32", "shape": "ab", "data_offsets": 1}}'),
        "config.json": deep,
    }
    reader = MetadataReader()
    _stream(reader, hostile)
    said = reader.message(sum(len(d) for d in hostile.values()))
    assert (said.architecture, said.parameter_count) == ("", 0)


def test_a_file_copied_again_after_a_failed_try_is_counted_once() -> None:
    weights = minilm_files()["model.safetensors"]
    reader = MetadataReader()
    first = reader.watch("model.safetensors")
    first.feed(weights[: 1 << 20])  # the header is read; then the connection drops and the file starts over
    _stream(reader, {"model.safetensors": weights})
    once = MetadataReader()
    _stream(once, {"model.safetensors": weights})
    assert reader.message(0).parameter_count == once.message(0).parameter_count > 0


def test_an_oci_artifacts_config_fills_only_what_the_files_left_unsaid() -> None:
    """A ModelPack config (read back by modelpack.read_config) says what a model is when its files do not (weights in
    a format the reader does not parse); what the files say wins."""
    config = modelpack.config_blob(
        ModelFacts(name="m", architecture="LlamaForCausalLM", parameters=6_700_000_000, dtype="BF16", license="mit"),
        [],
    )
    described = modelpack.read_config(config)
    silent = MetadataReader(described=described)
    meta = silent.message(_stream(silent, {"weights.bin": b"\x00" * 64}))
    assert (meta.architecture, meta.parameter_count, meta.dtype, meta.license) == (
        "LlamaForCausalLM",
        6_700_000_000,
        "BF16",
        "mit",
    )
    talkative = MetadataReader(described=described)
    meta = talkative.message(_stream(talkative, minilm_files(), block=65536))
    assert (meta.architecture, meta.dtype, meta.license) == ("BertModel", "F32", "apache-2.0")
    assert 22_700_000 < meta.parameter_count < 22_800_000
