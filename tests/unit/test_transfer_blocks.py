"""The loader gathers network reads into blocks before hashing and storing them: same bytes, fewer hops."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from model_manager.loader.errors import PermanentError
from model_manager.loader.sources.base import RemoteFile
from model_manager.loader.transfer import Verifier, blocks


async def _chunks(sizes: list[int]) -> AsyncIterator[bytes]:
    for i, n in enumerate(sizes):
        yield bytes([i % 251]) * n


async def _collect(sizes: list[int], size: int) -> list[bytes]:
    return [b async for b in blocks(_chunks(sizes), size)]


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([3, 3, 3, 3], [6, 6]),  # small reads gathered
        ([4, 4, 1], [8, 1]),  # a block may run past the size by part of a read; the rest ends shorter
        ([10, 2, 2], [10, 4]),  # a read already as large as a block passes alone
        ([], []),
        ([5], [5]),
    ],
)
async def test_blocks_carry_the_same_bytes_in_fewer_pieces(sizes: list[int], expected: list[int]) -> None:
    got = await _collect(sizes, 6)
    assert [len(b) for b in got] == expected
    assert b"".join(got) == b"".join([b async for b in _chunks(sizes)])


async def test_the_verifier_hashes_blocks_in_order_off_the_loop() -> None:
    data = [bytes([i]) * (3 * 1024 * 1024 + i) for i in range(5)]
    whole = b"".join(data)
    good = RemoteFile(path="w.bin", size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    v = Verifier(good, "w.bin")
    for block in data:
        await v.update(block)
    await v.finish()
    v.check()
    bad = Verifier(RemoteFile(path="w.bin", size=len(whole), sha256=hashlib.sha256(whole[::-1]).hexdigest()), "w")
    for block in data:
        await bad.update(block)
    await bad.finish()
    with pytest.raises(PermanentError, match="sha256 mismatch"):
        bad.check()
