"""A PostgreSQL server as clients meet it while it starts up or recovers: it speaks the protocol's start-up
exchange and then refuses with SQLSTATE 57P03 ("cannot connect now"), as the real one does for a few moments
after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def error_response(sqlstate: str, message: str) -> bytes:
    fields = b"SFATAL\0VFATAL\0C" + sqlstate.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + (len(fields) + 4).to_bytes(4, "big") + fields


@asynccontextmanager
async def refusing_postgres(
    sqlstate: str = "57P03", message: str = "the database system is starting up"
) -> AsyncIterator[int]:
    """A port on 127.0.0.1 whose every connection is refused with `sqlstate` after the start-up message."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(4), "big")
                body = await reader.readexactly(length - 4)
                if int.from_bytes(body[:4], "big") not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    break  # the StartupMessage
                writer.write(b"N")  # no TLS, no GSS: go on in plain text
            writer.write(error_response(sqlstate, message))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
