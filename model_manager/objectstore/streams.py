"""Reading an async byte stream in parts of a fixed size, carrying what straddles a boundary."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator


class PartReader:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._leftover = b""
        self._done = False

    async def read(self, size: int) -> tuple[io.BytesIO, int]:
        """The next part (positioned at its start) and its length: `size` bytes, fewer only at the end.

        A BytesIO that owns its buffer, on purpose: botocore turns a bytes body into a BytesIO sharing it, and
        aiohttp then asks that BytesIO for its buffer, which copies it, so every part in flight was held twice.
        """
        part = io.BytesIO()
        have = part.write(self._leftover[:size])
        self._leftover = self._leftover[size:]
        while have < size and not self._done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True
                break
            room = size - have
            have += part.write(chunk[:room] if len(chunk) > room else chunk)
            if len(chunk) > room:
                self._leftover = chunk[room:]
        part.seek(0)
        return part, have
