"""The GGUF conversion on real bytes: tiny random checkpoints with real tokenizers, converted through a local store
to every supported type and read back with gguf's own reader (what llama.cpp's tools use)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from model_manager.core.files import StoredFile
from model_manager.loader.convert.checkpoint import UnsupportedModel
from model_manager.loader.convert.run import Conversion, Converted
from model_manager.objectstore.local import LocalStore
from tests.checkpoints import CHAT_TEMPLATE, Checkpoint

PREFIX = "models/base/org-tiny"
Array = np.ndarray[Any, Any]


async def convert(tmp_path: Path, ck: Checkpoint, gguf_type: str) -> tuple[gguf.GGUFReader, Converted]:
    store = LocalStore(tmp_path / "store")
    files = ck.write(tmp_path / "store" / PREFIX)
    stored = [StoredFile(p.name, p.stat().st_size, "") for p in sorted(files.iterdir())]
    conversion = Conversion(store, PREFIX, stored, gguf_type, f"org-tiny-{gguf_type}")
    converted = await conversion.write(await conversion.prepare())
    return gguf.GGUFReader(tmp_path / "store" / conversion.key), converted


def hf_names(ck: Checkpoint) -> dict[str, str]:
    """llama.cpp's name for each Hugging Face tensor (written out here, not taken from gguf's map)."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not ck.tied:
        names["lm_head.weight"] = "output.weight"
    parts = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    if ck.architecture == "Qwen2ForCausalLM":
        parts |= {f"self_attn.{x}_proj.bias": f"attn_{x}.bias" for x in "qkv"}
    for i in range(ck.layers):
        names |= {f"model.layers.{i}.{hf}": f"blk.{i}.{ll}" for hf, ll in parts.items()}
    return names


def interleaved(weights: Array, heads: int) -> Array:
    """Each head's rows from Hugging Face's rotary halves (0..d/2-1, d/2..d-1) to llama.cpp's pairs (0, d/2, 1, ...)."""
    d = weights.shape[0] // heads
    order = [h * d + half * (d // 2) + i for h in range(heads) for i in range(d // 2) for half in (0, 1)]
    return weights[order]


def expected(ck: Checkpoint) -> dict[str, Array]:
    weights, names = ck.weights(), hf_names(ck)
    out = {}
    for hf, value in weights.items():
        if ck.architecture != "Qwen2ForCausalLM" and hf.endswith("q_proj.weight"):
            value = interleaved(value, ck.heads)
        elif ck.architecture != "Qwen2ForCausalLM" and hf.endswith("k_proj.weight"):
            value = interleaved(value, ck.kv_heads)
        out[names[hf]] = value
    return out


def values(tensor: Any) -> Array:
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(
        tuple(reversed([int(n) for n in tensor.shape]))
    )


def field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "bf16", "q8_0", "q4_0"])
async def test_every_type_has_llama_cpp_names_shapes_and_values(tmp_path: Path, gguf_type: str) -> None:
    ck = Checkpoint(dtype="bf16")
    reader, converted = await convert(tmp_path, ck, gguf_type)
    want = expected(ck)
    got = {t.name: t for t in reader.tensors}
    assert set(got) == set(want)
    matrix = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}[gguf_type]
    for name, ref in want.items():
        tensor = got[name]
        assert tuple(int(n) for n in reversed(tensor.shape)) == ref.shape, name
        if ref.ndim == 1:
            assert tensor.tensor_type.name == "F32", name  # norms stay float32
        elif gguf_type == "q4_0" and name == "output.weight":
            assert tensor.tensor_type.name == "Q8_0"
        else:
            assert tensor.tensor_type.name == matrix, name
        got_values = values(tensor)
        if tensor.tensor_type.name in ("F32", "BF16"):
            np.testing.assert_array_equal(got_values, ref, err_msg=name)  # bf16 weights fit both exactly
        elif tensor.tensor_type.name == "F16":
            np.testing.assert_allclose(got_values, ref, rtol=2**-10, atol=2**-24, err_msg=name)
        else:
            # A block of 32 shares one scale: q8_0 steps by max|x|/127, q4_0 by max|x|/8; rounding is within a step.
            blocks = ref.reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / (127 if tensor.tensor_type.name == "Q8_0" else 8)
            error = np.abs(got_values.reshape(-1, 32) - blocks)
            assert (error <= step * 1.01 + 1e-7).all(), name
            assert error.max() > 0  # it is quantized, not copied
    assert converted.file.size == (tmp_path / "store" / PREFIX / f"org-tiny-{gguf_type}.gguf").stat().st_size
    on_disk = (tmp_path / "store" / PREFIX / f"org-tiny-{gguf_type}.gguf").read_bytes()
    assert converted.file.sha256 == hashlib.sha256(on_disk).hexdigest()
    assert converted.metadata.architecture == "llama" and converted.metadata.quantization == matrix
    assert converted.metadata.parameter_count == sum(v.size for v in want.values())


async def test_the_metadata_and_a_byte_level_bpe_vocabulary_are_llama_cpps(tmp_path: Path) -> None:
    ck = Checkpoint()
    reader, _ = await convert(tmp_path, ck, "q8_0")
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.name") == "org-tiny-q8_0"
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert field(reader, "llama.block_count") == ck.layers
    assert field(reader, "llama.context_length") == 2048
    assert field(reader, "llama.embedding_length") == ck.hidden
    assert field(reader, "llama.feed_forward_length") == ck.feed_forward
    assert field(reader, "llama.attention.head_count") == ck.heads
    assert field(reader, "llama.attention.head_count_kv") == ck.kv_heads
    assert field(reader, "llama.rope.dimension_count") == ck.hidden // ck.heads
    assert field(reader, "llama.rope.freq_base") == 500000.0
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    tokenizer = json.loads(ck.files()["tokenizer.json"])
    vocab = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    vocab |= {t["id"]: t["content"] for t in tokenizer["added_tokens"]}
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.tokens") == [vocab[i] for i in range(len(vocab))]
    assert len(field(reader, "tokenizer.ggml.merges")) == len(tokenizer["model"]["merges"])
    assert field(reader, "tokenizer.ggml.bos_token_id") == tokenizer["model"]["vocab"].get(
        "<s>", vocab_id(vocab, "<s>")
    )
    assert field(reader, "tokenizer.ggml.eos_token_id") == vocab_id(vocab, "</s>")
    assert field(reader, "tokenizer.chat_template") == CHAT_TEMPLATE
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[vocab_id(vocab, "</s>")] == gguf.TokenType.CONTROL and types[0] == gguf.TokenType.NORMAL


def vocab_id(vocab: dict[int, str], token: str) -> int:
    return next(i for i, t in vocab.items() if t == token)


async def test_a_sharded_mistral_of_f16_with_a_sentencepiece_tokenizer(tmp_path: Path) -> None:
    import sentencepiece

    ck = Checkpoint(architecture="MistralForCausalLM", dtype="f16", tokenizer="spm", shards=3, vocab=300)
    reader, _ = await convert(tmp_path, ck, "f16")
    got = {t.name: values(t) for t in reader.tensors}
    for name, ref in expected(ck).items():
        np.testing.assert_array_equal(got[name], ref, err_msg=name)  # f16 weights to f16: exact
    spm = sentencepiece.SentencePieceProcessor(model_proto=ck.files()["tokenizer.model"])
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert tokens[: spm.vocab_size()] == [spm.id_to_piece(i) for i in range(spm.vocab_size())]
    assert len(tokens) == ck.vocab  # the embedding's extra rows are padding tokens
    assert field(reader, "tokenizer.ggml.token_type")[-1] == gguf.TokenType.UNUSED
    assert field(reader, "tokenizer.ggml.bos_token_id") == 1


async def test_qwen2_keeps_its_rotary_order_and_biases(tmp_path: Path) -> None:
    ck = Checkpoint(architecture="Qwen2ForCausalLM", dtype="f32")
    reader, _ = await convert(tmp_path, ck, "f32")
    assert field(reader, "general.architecture") == "qwen2"
    assert field(reader, "qwen2.block_count") == ck.layers
    got = {t.name: values(t) for t in reader.tensors}
    weights = ck.weights()
    np.testing.assert_array_equal(got["blk.0.attn_q.weight"], weights["model.layers.0.self_attn.q_proj.weight"])
    np.testing.assert_array_equal(got["blk.1.attn_k.bias"], weights["model.layers.1.self_attn.k_proj.bias"])


async def test_llama3_rope_scaling_becomes_a_rope_freqs_tensor(tmp_path: Path) -> None:
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}  # fmt: skip
    ck = Checkpoint(tied=True, extra_config={"rope_scaling": scaling})
    reader, _ = await convert(tmp_path, ck, "bf16")
    factors = next(values(t) for t in reader.tensors if t.name == "rope_freqs.weight")
    assert factors.shape == (ck.hidden // ck.heads // 2,)
    assert factors[0] == 1.0 and factors[-1] == 8.0  # the highest frequency kept, the lowest stretched
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied: the engine reuses the embedding


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["BertModel"]}, "the model declares architecture 'BertModel'; supported: LlamaForCausalLM"),
        ({"architectures": None}, 'no architecture \\(config.json has no "architectures"\\)'),
        ({"hidden_size": "big"}, "config.json has no positive integer 'hidden_size'"),
        ({"rms_norm_eps": "tiny"}, "config.json's rms_norm_eps must be a positive number, got 'tiny'"),
        (
            {"rope_scaling": {"rope_type": "llama3", "factor": [8]}},
            r"config.json's rope_scaling.factor must be a positive number, got \[8\]",
        ),
    ],
)
async def test_what_cannot_be_converted_is_named_and_nothing_is_written(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    ck = Checkpoint(extra_config=change)
    with pytest.raises(UnsupportedModel, match=message):
        await convert(tmp_path, ck, "q8_0")
    assert not list((tmp_path / "store" / PREFIX).glob("*.gguf*"))


def _shard(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + b"\0" * 64


@pytest.mark.parametrize(
    ("file", "data", "message"),
    [
        ("config.json", b"[" * 200_000 + b"]" * 200_000, "config.json is not JSON"),
        (
            "model.safetensors",
            _shard(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": "ab"}}'),
            "model.safetensors describes tensor w badly: data_offsets must be a list of 2 non-negative integers",
        ),
        (
            "model.safetensors",
            _shard(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}'),
            "tensor w in model.safetensors lies outside the file",
        ),
        ("model.safetensors", _shard(b"[" * 100_000), "the safetensors header of model.safetensors is not JSON"),
        ("model.safetensors", _shard(b"[1, 2]"), "the safetensors header of model.safetensors is not a JSON object"),
        ("tokenizer.json", b"[" * 200_000, r"the tokenizer \(.*tokenizer.json.*\) cannot be read"),
    ],
    ids=["deep-config", "string-offsets", "offsets-backwards", "deep-header", "list-header", "deep-tokenizer"],
)
async def test_hostile_files_are_refused_naming_the_file_and_the_problem(
    tmp_path: Path, file: str, data: bytes, message: str
) -> None:
    """What a source may hold in place of a checkpoint's files: the conversion refuses it as UnsupportedModel (a
    failed load naming the problem), never with RecursionError or TypeError."""
    ck = Checkpoint()
    directory = ck.write(tmp_path / "store" / PREFIX)
    (directory / file).write_bytes(data)
    stored = [StoredFile(p.name, p.stat().st_size, "") for p in sorted(directory.iterdir())]
    conversion = Conversion(LocalStore(tmp_path / "store"), PREFIX, stored, "q8_0", "org-tiny-q8_0")
    with pytest.raises(UnsupportedModel, match=message):
        await conversion.write(await conversion.prepare())
    assert not list(directory.glob("*.gguf*"))


async def test_a_failure_midway_leaves_no_partial_file(tmp_path: Path) -> None:
    ck = Checkpoint()
    store = LocalStore(tmp_path / "store")
    directory = ck.write(tmp_path / "store" / PREFIX)
    stored = [StoredFile(p.name, p.stat().st_size, "") for p in sorted(directory.iterdir())]
    conversion = Conversion(store, PREFIX, stored, "q8_0", "org-tiny-q8_0")
    stream = await conversion.prepare()
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # the shard is cut short
    with pytest.raises(Exception, match="the file changed"):
        await conversion.write(stream)
    assert sorted(p.name for p in directory.iterdir() if "gguf" in p.name) == []
