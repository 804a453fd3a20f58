"""One slice of one tensor, from the checkpoint's bytes to the GGUF type's: decode, reorder q/k rows the way
llama.cpp's rotary kernels expect, convert or quantize. Pure numpy, run in a worker thread."""

from __future__ import annotations

from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, quants

Array = np.ndarray[Any, Any]


def decode(raw: bytes | bytearray | memoryview, dtype: str, shape: tuple[int, ...]) -> Array:
    """The checkpoint's values as float32 (bfloat16 is float32's upper half)."""
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32, copy=False)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)
    bits = np.frombuffer(raw, dtype="<u2").reshape(shape).astype(np.uint32) << 16
    return bits.view(np.float32)


def permute_qk(weights: Array, heads: int) -> Array:
    """Hugging Face stores each head's rotary dimensions as two halves; llama.cpp wants them as adjacent pairs."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def encode(values: Array, qtype: GGMLQuantizationType) -> bytes:
    """float32 values as `qtype`'s bytes, row by row (quantized types in blocks along each row)."""
    if qtype == GGMLQuantizationType.F32:
        return values.astype("<f4", copy=False).tobytes()
    if qtype == GGMLQuantizationType.F16:
        return values.astype("<f2").tobytes()
    return quants.quantize(np.ascontiguousarray(values, dtype=np.float32), qtype).tobytes()


def output_nbytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    byte_shape = quants.quant_shape_to_byte_shape(shape, qtype) if qtype not in _PLAIN else shape
    return int(np.prod(byte_shape)) * _PLAIN.get(qtype, 1)


_PLAIN = {GGMLQuantizationType.F32: 4, GGMLQuantizationType.F16: 2}
