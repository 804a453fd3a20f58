"""An Ollama registry, spoken to directly over its HTTP protocol (no ollama binary)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from model_manager.core.ids import InvalidId, check_ollama
from model_manager.loader import jsondoc
from model_manager.loader.errors import PermanentError, SourceNotFound, TransientError, http_error
from model_manager.loader.sources.base import RemoteFile, Source, http_get, stream_http

log = logging.getLogger(__name__)

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class OllamaSource(Source):
    kind = "ollama"

    def __init__(self, http: aiohttp.ClientSession, registry: str, model_id: str) -> None:
        self.http = http
        self.registry = registry.rstrip("/")
        try:  # the request was checked already; a loader checks what it turns into URLs itself
            check_ollama(model_id if ":" in model_id else f"{model_id}:latest")
        except InvalidId as e:
            raise PermanentError(e.message) from e
        name, _, tag = model_id.rpartition(":") if ":" in model_id else (model_id, "", "latest")
        self.namespace, _, self.model = name.rpartition("/")
        self.namespace = self.namespace or "library"
        self.tag = tag or "latest"
        self.name = f"Ollama model {self.namespace}/{self.model}:{self.tag}"
        self._manifest = b""

    def _url(self, *rest: str) -> URL:
        """A URL of this repository, checked to stay under the registry's /v2/ after yarl has normalized it."""
        url = URL(f"{self.registry}/v2/{self.namespace}/{self.model}/{'/'.join(rest)}")
        if not url.path.startswith(URL(self.registry).path.rstrip("/") + "/v2/"):
            raise PermanentError(f"{self.name}: the name does not make a registry URL")
        return url

    async def list_files(self) -> list[RemoteFile]:
        url = self._url("manifests", self.tag)
        try:
            async with http_get(self.http, url, f"{self.name}: manifest", {"Accept": MANIFEST_TYPE}) as resp:
                if resp.status == 404:
                    raise SourceNotFound(f"{self.name} not found in the Ollama registry")
                if resp.status != 200:
                    raise http_error(resp.status, f"{self.name}: manifest")
                self._manifest = await resp.read()
                manifest = jsondoc.parse(self._manifest)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            # The registry's address is the operator's: in the log, not in what the requester reads.
            log.warning("%s: cannot reach the registry %s (%s)", self.name, self.registry, e)
            raise TransientError(f"{self.name}: cannot reach the Ollama registry ({type(e).__name__})") from e
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
        return stream_http(self.http, self._url("blobs", digest), f"{self.name}: blob {digest}", offset=offset)

    async def _manifest_bytes(self, offset: int) -> AsyncIterator[bytes]:
        yield self._manifest[offset:]
