"""Whether a model at its source can be converted, asked before anything is stored: its config.json names a
supported architecture and it has safetensors weights. The server asks at request time, the loader again before
its transfer (the request may have skipped the check, or the branch moved)."""

from __future__ import annotations

from model_manager.loader.convert.checkpoint import UnsupportedModel, architecture_of, parse_config
from model_manager.loader.sources.base import RemoteFile, Source

CONFIG_CAP = 1 << 20


async def convertible(source: Source, files: list[RemoteFile]) -> str:
    """The model's Hugging Face architecture; UnsupportedModel, naming the problem, when it cannot be converted."""
    by_path = {f.path: f for f in files}
    config = by_path.get("config.json")
    if config is None:
        raise UnsupportedModel(f"cannot convert {source.name} to GGUF: it has no config.json")
    if not any("/" not in p and p.endswith(".safetensors") for p in by_path):
        raise UnsupportedModel(f"cannot convert {source.name} to GGUF: it has no safetensors weights")
    raw = bytearray()
    async for chunk in source.open(config):
        raw += chunk
        if len(raw) > CONFIG_CAP:
            raise UnsupportedModel(f"cannot convert {source.name} to GGUF: its config.json is over 1 MiB")
    return architecture_of(parse_config(bytes(raw)))
