"""Whole-object shortcuts for tests, built on the store's streaming interface."""

from __future__ import annotations

from collections.abc import AsyncIterator

from model_manager.objectstore.base import ObjectStore


async def put(store: ObjectStore, key: str, data: bytes) -> None:
    async def one() -> AsyncIterator[bytes]:
        yield data

    await store.upload(key, one())


async def get(store: ObjectStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])
