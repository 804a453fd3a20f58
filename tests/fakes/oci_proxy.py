"""A registry front that behaves like registries other than distribution: it forwards every request to a real
registry, except that it can refuse chunked uploads (405 on PATCH, as registries that take blobs whole do) or
advertise a minimum chunk size (`OCI-Chunk-Min-Length`, distribution spec 1.1). It records what it saw."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

_HOP = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Front:
    upstream: str  # host:port of the real registry
    refuse_chunks: bool = False
    min_chunk: int = 0
    cut_blobs_after: int = 0  # cut the connection after this many bytes of a blob download...
    cuts: int = 0  # ...this many times
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, body bytes
    ranges: list[str] = field(default_factory=list)  # the Range header of every blob download

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    async def forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path, len(body)))
        if request.method == "PATCH" and self.refuse_chunks:
            return web.json_response({"errors": [{"code": "UNSUPPORTED", "message": "no chunks"}]}, status=405)
        target = URL(f"http://{self.upstream}").with_path(request.path, encoded=True).with_query(request.query)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(request.method, target, headers=headers, data=body, allow_redirects=False) as resp,
        ):
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            if "Location" in out:  # keep the client talking to this front
                location = URL(out["Location"])
                if location.is_absolute():
                    out["Location"] = str(
                        location.with_host(request.url.host or "127.0.0.1").with_port(request.url.port)
                    )
            if request.method == "POST" and resp.status == 202 and self.min_chunk:
                out["OCI-Chunk-Min-Length"] = str(self.min_chunk)
        if request.method == "GET" and "/blobs/sha256:" in request.path:
            self.ranges.append(request.headers.get("Range", ""))
            if self.cuts and len(data) > self.cut_blobs_after:
                self.cuts -= 1
                cut = web.StreamResponse(status=resp.status, headers=out)
                cut.content_length = len(data)
                await cut.prepare(request)
                await cut.write(data[: self.cut_blobs_after])
                request.transport.close()  # type: ignore[union-attr]  # the connection dies mid-blob
                return cut
        return web.Response(status=resp.status, headers=out, body=data)
