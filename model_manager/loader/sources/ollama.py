"""An Ollama registry, spoken to directly over its HTTP protocol (no ollama binary)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp

from model_manager.loader.errors import PermanentError, SourceNotFound, TransientError, http_error
from model_manager.loader.sources.base import RemoteFile, Source, stream_http

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class OllamaSource(Source):
    kind = "ollama"

    def __init__(self, http: aiohttp.ClientSession, registry: str, model_id: str) -> None:
        self.http = http
        self.registry = registry.rstrip("/")
        name, _, tag = model_id.rpartition(":") if ":" in model_id else (model_id, "", "latest")
        self.namespace, _, self.model = name.rpartition("/")
        self.namespace = self.namespace or "library"
        self.tag = tag or "latest"
        self.name = f"Ollama model {self.namespace}/{self.model}:{self.tag}"
        self._manifest = b""

    @property
    def _base(self) -> str:
        return f"{self.registry}/v2/{self.namespace}/{self.model}"

    async def list_files(self) -> list[RemoteFile]:
        url = f"{self._base}/manifests/{self.tag}"
        try:
            async with self.http.get(url, headers={"Accept": MANIFEST_TYPE}) as resp:
                if resp.status == 404:
                    raise SourceNotFound(f"{self.name} not found in the registry {self.registry}")
                if resp.status != 200:
                    raise http_error(resp.status, f"{self.name}: manifest")
                self._manifest = await resp.read()
                manifest = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise TransientError(f"{self.name}: cannot reach the registry {self.registry} ({e})") from e
        except ValueError as e:
            raise PermanentError(f"{self.name}: the manifest is not JSON") from e
        digest = hashlib.sha256(self._manifest).hexdigest()
        self.revision = f"sha256:{digest}"
        # An Ollama runtime looks for manifests/<host>/<namespace>/<model>/<tag> and blobs/sha256-<hex>.
        host = urlsplit(self.registry).netloc
        files = [RemoteFile(f"manifests/{host}/{self.namespace}/{self.model}/{self.tag}", len(self._manifest), digest)]
        try:
            layers = [manifest["config"], *manifest["layers"]]
            for layer in layers:
                algo, _, hexdigest = layer["digest"].partition(":")
                if algo != "sha256" or not _HEX64.fullmatch(hexdigest):  # it becomes part of an object key
                    raise PermanentError(f"{self.name}: unsupported digest {layer['digest']!r}")
                files.append(RemoteFile(f"blobs/sha256-{hexdigest}", int(layer["size"]), hexdigest))
        except (KeyError, TypeError, ValueError) as e:
            raise PermanentError(f"{self.name}: malformed manifest ({e})") from e
        return files

    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        if f.path.startswith("manifests/"):
            return self._manifest_bytes(offset)
        digest = "sha256:" + f.path.removeprefix("blobs/sha256-")
        return stream_http(self.http, f"{self._base}/blobs/{digest}", f"{self.name}: blob {digest}", offset=offset)

    async def _manifest_bytes(self, offset: int) -> AsyncIterator[bytes]:
        yield self._manifest[offset:]
