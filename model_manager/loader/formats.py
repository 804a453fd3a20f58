"""Model formats from a model's file list: which formats a model has, and which GGUF file serves it."""

from __future__ import annotations

from dataclasses import dataclass, field

from model_manager.loader.errors import PermanentError
from model_manager.proto.llmariner.models.server.v1 import ModelFormat


@dataclass(frozen=True)
class Detected:
    formats: list[ModelFormat]
    gguf_file: str = ""  # the single GGUF file, when there is exactly one
    split_gguf: list[str] = field(default_factory=list)  # several GGUF files and nothing else: one model each


def detect(paths: list[str]) -> Detected:
    """`paths` are relative to the model's root."""
    if not paths:
        raise PermanentError("no files downloaded")
    formats: list[ModelFormat] = []
    if any(p.startswith("blobs/") for p in paths):
        formats.append(ModelFormat.OLLAMA)
    if any(p in ("config.json", "adapter_config.json") for p in paths):
        formats.append(ModelFormat.HUGGING_FACE)
    if any(p.endswith("tensorrt_llm/config.pbtxt") for p in paths):
        formats.append(ModelFormat.NVIDIA_TRITON)
    ggufs = sorted(p for p in paths if p.endswith(".gguf"))
    if len(ggufs) == 1:
        return Detected(formats=[*formats, ModelFormat.GGUF], gguf_file=ggufs[0])
    if len(ggufs) > 1:
        if formats:
            raise PermanentError(
                f"found {len(ggufs)} GGUF files alongside another model format; cannot tell which model to create"
            )
        return Detected(formats=[ModelFormat.GGUF], split_gguf=ggufs)
    if not formats:
        raise PermanentError(
            "no model format found (no config.json, adapter_config.json, *.gguf, blobs/ or Triton config)"
        )
    return Detected(formats=formats)


def is_client_artifact(path: str) -> bool:
    """Files of the Hugging Face client itself (cache metadata, locks), never part of a model."""
    parts = path.split("/")
    return any(p in (".cache", ".huggingface", ".locks") for p in parts) or path.endswith((".lock", ".incomplete"))
