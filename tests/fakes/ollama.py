"""An Ollama registry stand-in: manifests and blobs over the registry's HTTP protocol (blobs via a redirect)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class OllamaModel:
    config: bytes
    layers: list[tuple[str, bytes]]  # (media type, data)
    corrupt: set[int] = field(default_factory=set)  # indexes of layers served with wrong bytes

    def digest(self, data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def manifest(self) -> bytes:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": self.digest(self.config),
                    "size": len(self.config),
                },
                "layers": [{"mediaType": t, "digest": self.digest(d), "size": len(d)} for t, d in self.layers],
            }
        ).encode()


class Registry:
    def __init__(self) -> None:
        self.models: dict[tuple[str, str, str], OllamaModel] = {}
        self.accepts: list[str] = []
        self.fail_manifests = 0  # answer manifest requests with 503 this many times
        self.requested: list[str] = []  # every path asked for, as sent (not decoded)
        self.blob_redirect: str | None = None  # where blob requests are sent instead of storage ("{n}": hop count)

    def add(self, namespace: str, model: str, tag: str, m: OllamaModel) -> None:
        self.models[(namespace, model, tag)] = m

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requested.append(request.raw_path)
            return await handler(request)  # type: ignore[no-any-return]

        app = web.Application(middlewares=[record])
        app.router.add_get("/v2/{ns}/{model}/manifests/{tag}", self.manifest)
        app.router.add_get("/hop/{n}", self.hop)
        app.router.add_get("/v2/{ns}/{model}/blobs/{digest}", self.blob)
        app.router.add_get("/storage/{digest}", self.storage)
        return app

    async def manifest(self, request: web.Request) -> web.Response:
        self.accepts.append(request.headers.get("Accept", ""))
        if self.fail_manifests > 0:
            self.fail_manifests -= 1
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=503)
        m = self.models.get((request.match_info["ns"], request.match_info["model"], request.match_info["tag"]))
        if m is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=m.manifest(), content_type=MANIFEST_TYPE)

    def _blob(self, digest: str) -> bytes | None:
        for m in self.models.values():
            if m.digest(m.config) == digest:
                return m.config
            for i, (_, data) in enumerate(m.layers):
                if m.digest(data) == digest:
                    return data[::-1] if i in m.corrupt else data
        return None

    async def blob(self, request: web.Request) -> web.Response:
        if self._blob(request.match_info["digest"]) is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if self.blob_redirect is not None:
            raise web.HTTPTemporaryRedirect(self.blob_redirect.format(n=1))
        # The real registry redirects blob downloads to storage.
        raise web.HTTPTemporaryRedirect(f"/storage/{request.match_info['digest']}")

    async def hop(self, request: web.Request) -> web.Response:
        """A redirect that never ends: /hop/1 to /hop/2 and on."""
        raise web.HTTPFound(f"/hop/{int(request.match_info['n']) + 1}")

    async def storage(self, request: web.Request) -> web.Response:
        data = self._blob(request.match_info["digest"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")
