"""The REST baseline: a bare aiohttp app answering every request with one pre-built JSON body."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

if __name__ == "__main__":
    body = Path(sys.argv[1]).read_bytes()
    port = int(sys.argv[2])

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/models", handler)
    app.router.add_get("/readyz", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
