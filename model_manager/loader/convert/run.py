"""Converting one stored model: read its config and tokenizer, index its shards, stream the GGUF into the store
next to the source files. A failure leaves no GGUF behind."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_manager.core.files import StoredFile
from model_manager.loader import jsondoc
from model_manager.loader.convert import checkpoint, plan, safetensors
from model_manager.loader.convert.checkpoint import UnsupportedModel
from model_manager.loader.convert.stream import ConversionProgress, GgufStream, source_bytes
from model_manager.loader.convert.vocab import TOKENIZER_FILES
from model_manager.loader.errors import TransientError
from model_manager.loader.metadata import MetadataReader
from model_manager.objectstore.base import ObjectStore
from model_manager.proto.llmariner.models.server import v1 as pb

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"


def _index(raw: bytes) -> dict[str, object]:
    try:
        return jsondoc.parse_object(raw, INDEX)
    except ValueError as e:
        raise UnsupportedModel(f"cannot convert to GGUF: {e}") from e


@dataclass(frozen=True)
class Converted:
    file: StoredFile  # named relative to the model's directory
    metadata: pb.ModelMetadata


@dataclass
class Conversion:
    """Converting the model stored under `prefix` (its files `files`) to a GGUF file `name` of type `gguf_type`."""

    store: ObjectStore
    prefix: str
    files: list[StoredFile]
    gguf_type: str
    name: str

    async def read(self, file: str, offset: int, length: int) -> bytes:
        key = f"{self.prefix}/{file}"
        data = bytearray()
        async for chunk in self.store.read(key, offset, length):
            data += chunk
        if len(data) != length:
            raise TransientError(f"{key}: read {len(data)} of {length} bytes at {offset}; the file changed")
        return bytes(data)

    async def _whole(self, file: str) -> bytes:
        size = self._sizes().get(file)
        if size is None:
            raise UnsupportedModel(f"cannot convert to GGUF: the model has no {file}")
        return await self.read(file, 0, size)

    def _sizes(self) -> dict[str, int]:
        return {f.path: f.size for f in self.files}

    @property
    def key(self) -> str:
        return f"{self.prefix}/{self.name}.gguf"

    async def prepare(self) -> GgufStream:
        """The GGUF file's stream, planned (config, tokenizer, shard headers read) but no weight read yet."""
        hp = checkpoint.hyperparameters(checkpoint.parse_config(await self._whole("config.json")))
        sizes = self._sizes()
        index = _index(await self._whole(INDEX)) if INDEX in sizes else None
        shards = safetensors.weight_files(list(sizes), index)
        if not shards:
            raise UnsupportedModel("cannot convert to GGUF: the model has no safetensors weights")
        missing = [s for s in shards if s not in sizes]
        if missing:
            raise UnsupportedModel(f"cannot convert to GGUF: the weights name {missing[0]}, which the model lacks")
        refs = await safetensors.read_tensors({s: sizes[s] for s in shards}, self.read)
        planned = plan.outputs(hp, refs, self.gguf_type)
        with tempfile.TemporaryDirectory(prefix="mm-tokenizer-") as tmp:
            for file in TOKENIZER_FILES:
                if file in sizes:
                    Path(tmp, file).write_bytes(await self._whole(file))  # noqa: ASYNC240 - small files
            try:
                header, alignment = await asyncio.to_thread(
                    plan.header, hp, planned, Path(tmp), self.gguf_type, self.name
                )
            except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
                # gguf's own readers of the tokenizer files, on files the source wrote.
                files = ", ".join(f for f in TOKENIZER_FILES if f in sizes)
                raise UnsupportedModel(
                    f"cannot convert to GGUF: the tokenizer ({files}) cannot be read: {type(e).__name__}: {e}"[:500]
                ) from e
        progress = ConversionProgress(source_bytes(planned), len(planned), self.gguf_type)
        return GgufStream(header, alignment, planned, self.read, progress)

    async def write(self, stream: GgufStream) -> Converted:
        """Upload the planned file; on any failure nothing of it stays."""
        try:
            await self.store.upload(self.key, stream.chunks())
        except BaseException:
            await asyncio.shield(self.store.discard_unfinished(self.key))
            raise
        file = f"{self.name}.gguf"
        reader = MetadataReader()
        watcher = reader.watch(file)
        watcher.feed(stream.header)
        watcher.close()
        log.info("wrote %s: %d bytes of GGUF %s", self.key, stream.size, self.gguf_type)
        return Converted(
            StoredFile(path=file, size=stream.size, sha256=stream.sha256.hexdigest()),
            reader.message(stream.size, gguf_file=file),
        )
