"""An OCI registry as a source: a ModelPack artifact (or any image manifest whose layers name their files), loaded
file by file from its layers, each verified against its digest as it is stored.

The manifest's digest is the revision: two tags of one manifest are one content, stored once. The config blob, when
it is a ModelPack config, says what the model is where the files do not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from model_manager.core.oci_ref import OciRef
from model_manager.loader.errors import LoadError, PermanentError, SourceDenied, SourceNotFound, TransientError
from model_manager.loader.sources.base import RemoteFile, Source
from model_manager.oci import modelpack
from model_manager.oci.client import Registry
from model_manager.oci.errors import RegistryDenied, RegistryError, RegistryNotFound

MAX_CONFIG = 1 << 20  # a ModelPack config is a few hundred bytes; more is not read


def _load_error(e: RegistryError) -> LoadError:
    if isinstance(e, RegistryNotFound):
        return SourceNotFound(e.message)
    if isinstance(e, RegistryDenied):
        return SourceDenied(e.message)
    return TransientError(e.message) if e.transient else PermanentError(e.message)


class OciSource(Source):
    kind = "oci"

    def __init__(self, registry: Registry, ref: OciRef) -> None:
        self.registry = registry
        self.ref = ref
        self.name = f"OCI artifact {ref}"
        self.content_name = ref.name  # what the content is, whichever tag named it: the manifest digest says

    async def list_files(self) -> list[RemoteFile]:
        try:
            manifest = await self.registry.get_manifest(self.ref.repository, self.ref.reference)
        except RegistryError as e:
            raise _load_error(e) from e
        self.revision = manifest.digest
        try:
            artifact = modelpack.read_manifest(manifest.body, manifest.media_type)
        except modelpack.NotAModel as e:
            hint = (
                " (an Ollama model? load it with source_repository OLLAMA)"
                if isinstance(e, modelpack.UnnamedLayer)
                else ""
            )
            raise PermanentError(f"{self.name}: not a model artifact: {e}{hint}") from e
        if artifact.config_media_type == modelpack.CONFIG_TYPE and artifact.config_size <= MAX_CONFIG:
            self.described = modelpack.read_config(await self._blob(artifact.config_digest))
        return [RemoteFile(layer.path, layer.size, layer.digest.removeprefix("sha256:")) for layer in artifact.layers]

    async def _blob(self, digest: str) -> bytes:
        return b"".join([chunk async for chunk in self._stream(digest, 0)])

    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        return self._stream(f"sha256:{f.sha256}", offset)

    async def _stream(self, digest: str, offset: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.registry.read_blob(self.ref.repository, digest, offset):
                yield chunk
        except RegistryError as e:
            raise _load_error(e) from e
