"""Tiny random checkpoints of the architectures the GGUF conversion takes, written as Hugging Face lays them out:
config.json, safetensors shards (with an index when sharded), and a real tokenizer trained on the spot (a
byte-level BPE with the `tokenizers` package, or a SentencePiece model with `sentencepiece`)."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TEXT = (
    "The quick brown fox jumps over the lazy dog. Models are stored, converted and served. "
    "A loader streams files into a bucket; an engine reads them. 0123456789 llama mistral qwen "
) * 20
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


@dataclass
class Checkpoint:
    architecture: str = "LlamaForCausalLM"
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    layers: int = 2
    feed_forward: int = 128
    vocab: int = 320
    dtype: str = "bf16"  # how the weights are stored: f32, f16 or bf16
    tokenizer: str = "bpe"  # or "spm"
    shards: int = 1
    tied: bool = False  # no lm_head (the output reuses the embedding)
    seed: int = 0
    extra_config: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> dict[str, np.ndarray[Any, Any]]:
        """The tensors, as float32, under Hugging Face's names."""
        rng = np.random.default_rng(self.seed)
        head_dim = self.hidden // self.heads
        shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (self.vocab, self.hidden)}
        for i in range(self.layers):
            p = f"model.layers.{i}."
            shapes |= {
                p + "input_layernorm.weight": (self.hidden,),
                p + "post_attention_layernorm.weight": (self.hidden,),
                p + "self_attn.q_proj.weight": (self.hidden, self.hidden),
                p + "self_attn.k_proj.weight": (self.kv_heads * head_dim, self.hidden),
                p + "self_attn.v_proj.weight": (self.kv_heads * head_dim, self.hidden),
                p + "self_attn.o_proj.weight": (self.hidden, self.hidden),
                p + "mlp.gate_proj.weight": (self.feed_forward, self.hidden),
                p + "mlp.up_proj.weight": (self.feed_forward, self.hidden),
                p + "mlp.down_proj.weight": (self.hidden, self.feed_forward),
            }
            if self.architecture == "Qwen2ForCausalLM":
                shapes |= {
                    p + "self_attn.q_proj.bias": (self.hidden,),
                    p + "self_attn.k_proj.bias": (self.kv_heads * head_dim,),
                    p + "self_attn.v_proj.bias": (self.kv_heads * head_dim,),
                }
        shapes["model.norm.weight"] = (self.hidden,)
        if not self.tied:
            shapes["lm_head.weight"] = (self.vocab, self.hidden)
        values = {name: rng.normal(0, 0.05, shape).astype(np.float32) for name, shape in shapes.items()}
        for name, value in values.items():
            if name.endswith("norm.weight"):
                value += 1.0
        return {name: _rounded(v, self.dtype) for name, v in values.items()}

    def config(self) -> dict[str, Any]:
        return {
            "architectures": [self.architecture],
            "model_type": {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}.get(
                self.architecture, "qwen2"
            ),
            "hidden_size": self.hidden,
            "intermediate_size": self.feed_forward,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "num_hidden_layers": self.layers,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[self.dtype],
            **({"bos_token_id": 1, "eos_token_id": 2} if self.tokenizer == "spm" else {}),
            **self.extra_config,
        }

    def files(self) -> dict[str, bytes]:
        """Every file of the checkpoint, by its path in the repo."""
        weights = self.weights()
        out: dict[str, bytes] = {"config.json": json.dumps(self.config()).encode()}
        names = list(weights)
        groups = [names[i :: self.shards] for i in range(self.shards)]
        if self.shards == 1:
            out["model.safetensors"] = save(weights, self.dtype)
        else:
            weight_map: dict[str, str] = {}
            for i, group in enumerate(groups):
                shard = f"model-{i + 1:05d}-of-{self.shards:05d}.safetensors"
                out[shard] = save({n: weights[n] for n in group}, self.dtype)
                weight_map |= dict.fromkeys(group, shard)
            out["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
        out |= self._tokenizer()
        return out

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files().items():
            (directory / name).write_bytes(data)
        return directory

    def _tokenizer(self) -> dict[str, bytes]:
        specials = ["<s>", "</s>"]
        config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE, "add_bos_token": True}
        if self.tokenizer == "spm":
            import sentencepiece as spm

            model = io.BytesIO()
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(TEXT.split(". ")),
                model_writer=model,
                vocab_size=self.vocab - 8,
                model_type="bpe",
                byte_fallback=False,
                bos_id=1,
                eos_id=2,
                unk_id=0,
                hard_vocab_limit=False,
                minloglevel=2,
            )
            return {"tokenizer.model": model.getvalue(), "tokenizer_config.json": json.dumps(config).encode()}
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab - len(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator([TEXT], trainer)
        tok.add_special_tokens(specials)
        return {"tokenizer.json": tok.to_str().encode(), "tokenizer_config.json": json.dumps(config).encode()}


def _rounded(values: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """float32 values exactly representable in `dtype`, so a lossless conversion reproduces them bit for bit."""
    if dtype == "f16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return (values.view(np.uint32) & 0xFFFF0000).view(np.float32)
    return values


def save(weights: dict[str, np.ndarray[Any, Any]], dtype: str) -> bytes:
    """A safetensors file of `weights` (float32 values) stored as `dtype`: an 8-byte header length, the JSON header,
    the data."""
    header: dict[str, Any] = {}
    data = bytearray()
    for name, values in weights.items():
        if dtype == "bf16":
            raw = (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = values.astype("<f2" if dtype == "f16" else "<f4").tobytes()
        header[name] = {
            "dtype": dtype.upper(),
            "shape": list(values.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)
