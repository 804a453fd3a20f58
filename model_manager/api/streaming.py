"""A REST answer streamed as newline-delimited JSON (WatchModel over REST)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from aiohttp import web
from grpclib.const import Status

from model_manager.api.status import error_body, status_of
from model_manager.core.errors import ServiceError

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


async def stream_lines(
    request: web.Request, events: AsyncGenerator[bytes, None], request_id: str | None
) -> web.StreamResponse:
    """Send each JSON event on its own line as it comes.

    The first event is awaited before anything is sent, so a refusal (bad id, unknown model, no permission) is an
    ordinary error answer with its HTTP status. Once the stream has begun its status is 200, so an error that ends
    it (the model deleted, the server shutting down) is its last line: the usual error document."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await events.aclose()
        raise
    headers = {"Content-Type": NDJSON, "Cache-Control": "no-cache"}
    if request_id:
        headers["X-Request-Id"] = request_id  # sent now: the stream's headers go out before its handler ends
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if first is not None:
            await response.write(first + b"\n")
            async for event in events:
                await response.write(event + b"\n")
    except ConnectionResetError:
        return response  # the client left; nobody to tell
    except ServiceError as e:
        await _last_line(response, error_body(status_of(e), e.message, request_id))
    except Exception:
        log.exception("unexpected error streaming %s", request.path)
        await _last_line(response, error_body(Status.INTERNAL, "internal error", request_id))
    finally:
        await events.aclose()
    await response.write_eof()
    return response


async def _last_line(response: web.StreamResponse, body: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write(orjson.dumps(body) + b"\n")
