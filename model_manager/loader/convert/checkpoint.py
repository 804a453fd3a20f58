"""Which checkpoints convert to GGUF, and the hyperparameters llama.cpp needs, read from config.json."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES

from model_manager.loader import jsondoc
from model_manager.loader.errors import PermanentError

# Hugging Face architecture -> llama.cpp's. Mistral's checkpoints are Llama's layout (llama.cpp loads them as
# "llama"); Qwen2 adds q/k/v biases and keeps q/k in Hugging Face's rotary order.
SUPPORTED: dict[str, MODEL_ARCH] = {
    "LlamaForCausalLM": MODEL_ARCH.LLAMA,
    "MistralForCausalLM": MODEL_ARCH.LLAMA,
    "Qwen2ForCausalLM": MODEL_ARCH.QWEN2,
}


class UnsupportedModel(PermanentError):
    """The checkpoint is not one the GGUF conversion handles; the message names what it is."""


def architecture_of(config: Any) -> str:
    """The Hugging Face architecture config.json declares, refused unless it converts."""
    archs = config.get("architectures") if isinstance(config, dict) else None
    name = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    if name not in SUPPORTED:
        said = f"architecture {name!r}" if name else 'no architecture (config.json has no "architectures")'
        raise UnsupportedModel(f"cannot convert to GGUF: the model declares {said}; supported: {', '.join(SUPPORTED)}")
    return name


def parse_config(raw: bytes) -> dict[str, Any]:
    try:
        return jsondoc.parse_object(raw, "config.json")
    except ValueError as e:
        raise UnsupportedModel(f"cannot convert to GGUF: {e}") from e


def _int(config: dict[str, Any], *names: str, default: int | None = None) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if default is not None:
        return default
    raise UnsupportedModel(f"cannot convert to GGUF: config.json has no positive integer {names[0]!r}")


def _float(value: object, name: str, default: float) -> float:
    """A positive finite number of config.json (`default` when absent or null)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise UnsupportedModel(
            f"cannot convert to GGUF: config.json's {name} must be a positive number, got {value!r:.40}"
        )
    return float(value)


# The rope-scaling numbers the GGUF header and Llama 3.1's frequency factors are made from.
_ROPE_NUMBERS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _rope_scaling(value: object) -> dict[str, Any]:
    """config.json's rope_scaling with its type as text and its numbers checked; {} when there is none."""
    if not isinstance(value, dict):
        return {}
    kind = value.get("rope_type") or value.get("type") or ""
    found: dict[str, Any] = {"rope_type": kind if isinstance(kind, str) else ""}
    for key in _ROPE_NUMBERS:
        if value.get(key) is not None:
            found[key] = _float(value[key], f"rope_scaling.{key}", 0.0)
    return found


@dataclass(frozen=True)
class Hyperparameters:
    hf_architecture: str
    arch: MODEL_ARCH
    blocks: int
    embedding: int
    feed_forward: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    vocab_size: int
    rms_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any]

    @property
    def arch_name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]

    @property
    def permutes_qk(self) -> bool:
        """llama.cpp's Llama kernels expect q and k rows interleaved per rotary pair, not Hugging Face's halves."""
        return self.arch is MODEL_ARCH.LLAMA


def hyperparameters(config: dict[str, Any]) -> Hyperparameters:
    name = architecture_of(config)
    embedding = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    kv_heads = _int(config, "num_key_value_heads", default=heads)
    head_dim = _int(config, "head_dim", default=embedding // heads)
    if heads % kv_heads:
        raise UnsupportedModel(f"cannot convert to GGUF: {heads} attention heads over {kv_heads} key/value heads")
    return Hyperparameters(
        hf_architecture=name,
        arch=SUPPORTED[name],
        blocks=_int(config, "num_hidden_layers"),
        embedding=embedding,
        feed_forward=_int(config, "intermediate_size"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context=_int(config, "max_position_embeddings", default=4096),
        vocab_size=_int(config, "vocab_size"),
        rms_eps=_float(config.get("rms_norm_eps"), "rms_norm_eps", 1e-5),
        rope_theta=_float(config.get("rope_theta"), "rope_theta", 10000.0),
        rope_scaling=_rope_scaling(config.get("rope_scaling")),
    )
