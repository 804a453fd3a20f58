"""JSON the loader reads from sources (config.json, safetensors headers, index files, tokenizers, manifests): the
source, not this project, wrote it, so it is parsed with limits."""

from __future__ import annotations

from typing import Any

import orjson


def parse(raw: bytes | str) -> Any:
    """The document in `raw`; ValueError when it is not JSON, nests deeper than 1,024 levels (orjson's limit: the
    standard library would recurse until RecursionError instead) or holds an integer beyond 64 bits."""
    return orjson.loads(raw)
