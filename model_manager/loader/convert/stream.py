"""The GGUF file as a stream of bytes for the object store's upload: the header, then each tensor converted in
slices of rows read with ranged reads, so memory holds one slice (a rotary-reordered q/k matrix whole), whatever
the model's size. The numpy work runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from model_manager.core.units import human_bytes
from model_manager.loader.convert import tensors
from model_manager.loader.convert.plan import Output
from model_manager.loader.convert.safetensors import ReadRange
from model_manager.loader.progress import Progress

SLICE_BYTES = 8 << 20  # source bytes converted at a time (numpy's temporaries are a few times that)


class ConversionProgress(Progress):
    """Counts source bytes converted (bytes) and tensors (files); says how much GGUF is written."""

    def __init__(self, total_bytes: int, total_tensors: int, gguf_type: str) -> None:
        super().__init__(total_bytes, total_tensors)
        self.gguf_type = gguf_type
        self.written = 0

    def message(self) -> str:
        return (
            f"converting to GGUF {self.gguf_type}: tensor {min(self.done_files + 1, self.total_files)}/"
            f"{self.total_files}, {human_bytes(self.written)} written"
        )


@dataclass
class GgufStream:
    header: bytes
    alignment: int
    planned: list[Output]
    read: ReadRange
    progress: ConversionProgress
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0

    def _count(self, data: bytes) -> bytes:
        self.sha256.update(data)
        self.size += len(data)
        self.progress.written = self.size
        return data

    def _padding(self) -> bytes:
        return self._count(bytes(-self.size % self.alignment))

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._count(self.header)
        for out in self.planned:
            yield self._padding()
            async for data in self._tensor(out):
                yield data
            self.progress.file_done()
        yield self._padding()

    async def _tensor(self, out: Output) -> AsyncIterator[bytes]:
        if out.values is not None:
            yield await asyncio.to_thread(self._convert, out, out.values.tobytes(), out.values.shape)
            return
        ref = out.ref
        assert ref is not None
        rows = ref.shape[0] if len(ref.shape) > 1 and not out.permute_heads else 1
        row_bytes = ref.nbytes // rows
        per_slice = max(1, SLICE_BYTES // row_bytes)
        for first in range(0, rows, per_slice):
            n = min(per_slice, rows - first)
            raw = await self.read(ref.file, ref.start + first * row_bytes, n * row_bytes)
            shape = (n, *ref.shape[1:]) if rows > 1 else ref.shape
            yield await asyncio.to_thread(self._convert, out, raw, shape)
            self.progress.add_bytes(len(raw))

    def _convert(self, out: Output, raw: bytes, shape: tuple[int, ...]) -> bytes:
        dtype = out.ref.dtype if out.ref is not None else "F32"
        values = tensors.decode(raw, dtype, shape)
        if out.permute_heads:
            values = tensors.permute_qk(values, out.permute_heads)
        return self._count(tensors.encode(values, out.qtype))


def source_bytes(planned: list[Output]) -> int:
    return sum(o.ref.nbytes for o in planned if o.ref is not None)
