"""The GGUF file a checkpoint becomes, decided before any weight is read: every output tensor's name, type, shape
and size (so the header, which lists them all with their offsets, can be written first) and the metadata."""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    GGML_QUANT_VERSION,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
    RopeScalingType,
    get_tensor_name_map,
)

from model_manager.loader.convert.checkpoint import Hyperparameters, UnsupportedModel
from model_manager.loader.convert.safetensors import TensorRef
from model_manager.loader.convert.tensors import Array, output_nbytes
from model_manager.loader.convert.vocab import add_vocab

logging.getLogger("gguf").setLevel(logging.WARNING)  # it logs every key it writes at INFO

Q = GGMLQuantizationType
# Requested type -> (the type of the weight matrices, general.file_type).
TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (Q.F32, LlamaFileType.ALL_F32),
    "f16": (Q.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (Q.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}
_IGNORED = ("rotary_emb.inv_freq",)  # recomputed by the engine


@dataclass(frozen=True)
class Output:
    """One tensor of the GGUF file: read from `ref` (reordered for rotary with `permute_heads` heads), or the
    constant `values` the conversion computes."""

    name: str
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]
    nbytes: int
    ref: TensorRef | None = None
    permute_heads: int = 0
    values: Array | None = None


def tensor_type(name: str, shape: tuple[int, ...], wanted: GGMLQuantizationType) -> GGMLQuantizationType:
    """Vectors (norms, biases) stay float32, as llama.cpp keeps them. A matrix whose rows are not whole quant blocks
    falls back to f16. With q4_0 the output projection gets q8_0: it sets every logit, and llama.cpp's own q4_0
    keeps it at a higher precision too."""
    if len(shape) < 2:
        return Q.F32
    if wanted in (Q.F32, Q.F16, Q.BF16):
        return wanted
    if shape[-1] % GGML_QUANT_SIZES[wanted][0]:
        return Q.F16
    return Q.Q8_0 if wanted == Q.Q4_0 and name == "output.weight" else wanted


def llama3_rope_factors(hp: Hyperparameters) -> Array | None:
    """Llama 3.1's long-context rope scaling, which llama.cpp reads as a `rope_freqs` tensor of per-frequency
    divisors (low frequencies stretched by `factor`, high ones kept, a smooth ramp between)."""
    s = hp.rope_scaling
    if str(s.get("rope_type") or s.get("type") or "") != "llama3":
        return None
    factor = float(s.get("factor", 8.0))
    low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
    old_context = float(s.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim))
    wavelen = 2 * math.pi / freqs
    smooth = (old_context / wavelen - low) / (high - low)
    factors = np.where(
        wavelen < old_context / high,
        1.0,
        np.where(wavelen > old_context / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
    )
    return factors.astype(np.float32)


def outputs(hp: Hyperparameters, refs: list[TensorRef], gguf_type: str) -> list[Output]:
    wanted = TYPES[gguf_type][0]
    names = get_tensor_name_map(hp.arch, hp.blocks)
    planned: list[Output] = []
    if (factors := llama3_rope_factors(hp)) is not None:
        planned.append(Output("rope_freqs.weight", Q.F32, factors.shape, factors.nbytes, values=factors))
    for ref in refs:
        if ref.name.endswith(_IGNORED):
            continue
        name = names.get_name(ref.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModel(f"cannot convert to GGUF: tensor {ref.name} has no llama.cpp counterpart")
        heads = 0
        if hp.permutes_qk and ref.name.endswith("q_proj.weight"):
            heads = hp.heads
        elif hp.permutes_qk and ref.name.endswith("k_proj.weight"):
            heads = hp.kv_heads
        qtype = tensor_type(name, ref.shape, wanted)
        planned.append(Output(name, qtype, ref.shape, output_nbytes(ref.shape, qtype), ref, heads))
    return planned


def _metadata(writer: GGUFWriter, hp: Hyperparameters, gguf_type: str, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(hp.context)
    writer.add_embedding_length(hp.embedding)
    writer.add_block_count(hp.blocks)
    writer.add_feed_forward_length(hp.feed_forward)
    writer.add_head_count(hp.heads)
    writer.add_head_count_kv(hp.kv_heads)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim != hp.embedding // hp.heads:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    scaling = str(hp.rope_scaling.get("rope_type") or hp.rope_scaling.get("type") or "")
    if scaling in ("linear", "yarn") and "factor" in hp.rope_scaling:
        writer.add_rope_scaling_type(RopeScalingType.LINEAR if scaling == "linear" else RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(hp.rope_scaling["factor"]))
        if "original_max_position_embeddings" in hp.rope_scaling:
            writer.add_rope_scaling_orig_ctx_len(int(hp.rope_scaling["original_max_position_embeddings"]))
    writer.add_vocab_size(hp.vocab_size)
    writer.add_file_type(TYPES[gguf_type][1])
    if gguf_type in ("q8_0", "q4_0"):
        writer.add_quantization_version(GGML_QUANT_VERSION)


def header(hp: Hyperparameters, planned: list[Output], tokenizer: Path, gguf_type: str, name: str) -> tuple[bytes, int]:
    """The GGUF file up to its tensor data (magic, metadata, tensor infos) and the data alignment. gguf's writer
    writes it to a scratch file: only the small header goes there, never a weight."""
    with tempfile.TemporaryDirectory(prefix="mm-gguf-") as tmp:
        path = Path(tmp) / "header.gguf"
        writer = GGUFWriter(path, hp.arch_name)
        _metadata(writer, hp, gguf_type, name)
        add_vocab(writer, tokenizer, hp.vocab_size)
        for out in planned:
            writer.add_tensor_info(out.name, out.shape, np.dtype(np.float32), out.nbytes, raw_dtype=out.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        return path.read_bytes(), writer.data_alignment
