"""JSON the loader reads from sources (config.json, safetensors headers, index files, tokenizers, manifests): the
source, not this project, wrote it, so it is parsed with limits."""

from __future__ import annotations

from typing import Any

import orjson


def parse(raw: bytes | str) -> Any:
    """The document in `raw`; ValueError when it is not JSON, nests deeper than 1,024 levels (orjson's limit: the
    standard library would recurse until RecursionError instead) or holds an integer beyond 64 bits."""
    return orjson.loads(raw)


def parse_object(raw: bytes | str, name: str) -> dict[str, Any]:
    """A JSON object; ValueError saying that `name` (what the bytes are, for the message) is not one."""
    try:
        found = parse(raw)
    except ValueError as e:
        raise ValueError(f"{name} is not JSON ({e})") from e
    if not isinstance(found, dict):
        raise ValueError(f"{name} is not a JSON object")
    return found
