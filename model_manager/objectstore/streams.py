"""Reading an async byte stream in parts of a fixed size, carrying what straddles a boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator


class PartReader:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._leftover = b""
        self._done = False

    async def read(self, size: int) -> bytearray:
        """Up to `size` bytes; fewer only at the end of the stream."""
        buf = bytearray(self._leftover[:size])
        self._leftover = self._leftover[size:]
        while len(buf) < size and not self._done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True
                break
            room = size - len(buf)
            buf += chunk[:room]
            if len(chunk) > room:
                self._leftover = chunk[room:]
        return buf
