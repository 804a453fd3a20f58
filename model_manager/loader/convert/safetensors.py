"""Where each tensor of a stored checkpoint is: safetensors shards read by their headers only (8 bytes of
little-endian length, then a JSON object of name -> dtype, shape and data offsets after the header)."""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from model_manager.loader import jsondoc
from model_manager.loader.convert.checkpoint import UnsupportedModel

HEADER_CAP = 100 << 20  # a header longer than this is not a checkpoint's
ITEM_SIZES = {"F32": 4, "F16": 2, "BF16": 2}  # the float types checkpoints hold weights in

ReadRange = Callable[[str, int, int], Awaitable[bytes]]  # (file, offset, length) -> exactly those bytes


@dataclass(frozen=True)
class TensorRef:
    name: str
    dtype: str  # F32, F16 or BF16
    shape: tuple[int, ...]
    file: str  # the shard's path within the model
    start: int  # absolute byte offset of the data in the shard
    nbytes: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def weight_files(paths: list[str], index: dict[str, object] | None) -> list[str]:
    """The shards holding the weights: those the index names, else `model*.safetensors`, else any top-level
    `*.safetensors` (Mistral repos also carry `consolidated.safetensors`, the same weights under other names)."""
    if index is not None:
        mapped = index.get("weight_map")
        if isinstance(mapped, dict):
            return sorted({str(v) for v in mapped.values()})
    top = [p for p in paths if "/" not in p and p.endswith(".safetensors")]
    named = [p for p in top if p.startswith("model")]
    return sorted(named or top)


def _naturals(value: object, what: str, count: int | None = None) -> tuple[int, ...]:
    """A JSON list of non-negative integers (of `count` items when given); ValueError naming `what` otherwise."""
    if (
        not isinstance(value, list)
        or (count is not None and len(value) != count)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    ):
        items = f"{count} " if count is not None else ""
        raise ValueError(f"{what} must be a list of {items}non-negative integers, got {str(value)[:60]!r}")
    return tuple(value)


def parse_header(file: str, raw: bytes, size: int) -> list[TensorRef]:
    """The tensors of one shard, from its header (`raw` = the JSON) and the shard's size, checked to lie inside it."""
    base = 8 + len(raw)
    try:
        header = jsondoc.parse_object(raw, f"the safetensors header of {file}")
    except ValueError as e:
        raise UnsupportedModel(f"cannot convert to GGUF: {e}") from e
    refs = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
                raise ValueError("it must be an object with a string dtype")
            dtype, shape = info["dtype"], _naturals(info.get("shape"), "shape")
            begin, end = _naturals(info.get("data_offsets"), "data_offsets", 2)
        except ValueError as e:
            raise UnsupportedModel(f"cannot convert to GGUF: {file} describes tensor {name} badly: {e}") from e
        if dtype not in ITEM_SIZES:
            raise UnsupportedModel(
                f"cannot convert to GGUF: tensor {name} in {file} is {dtype}; supported: {', '.join(ITEM_SIZES)}"
            )
        if end - begin != math.prod(shape) * ITEM_SIZES[dtype] or base + end > size:
            raise UnsupportedModel(f"cannot convert to GGUF: tensor {name} in {file} lies outside the file")
        refs.append(TensorRef(name, dtype, shape, file, base + begin, end - begin))
    return refs


async def read_tensors(files: dict[str, int], read: ReadRange) -> list[TensorRef]:
    """Every tensor of the shards `files` (path -> size), in file order."""
    refs: list[TensorRef] = []
    for file, size in files.items():
        if size < 8:
            raise UnsupportedModel(f"cannot convert to GGUF: {file} is too short to be safetensors")
        (length,) = struct.unpack("<Q", await read(file, 0, 8))
        if length > min(HEADER_CAP, size - 8):
            raise UnsupportedModel(f"cannot convert to GGUF: {file} has a safetensors header of {length} bytes")
        refs.extend(sorted(parse_header(file, await read(file, 8, length), size), key=lambda r: r.start))
    return refs
