"""The small interface every object store backend offers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

from model_manager.core import ids
from model_manager.core.errors import FailedPrecondition


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""  # the store's version tag of the object ("" where the backend has none)


@dataclass(frozen=True)
class Partial:
    """What an interrupted write of a key left behind, safe to continue from: its first `size` bytes.

    `readable` says whether the store can read them back before the write completes (a local temporary file can;
    the parts of an S3 multipart upload cannot). `handle` is the backend's own (a file, an upload id and parts)."""

    key: str
    size: int
    readable: bool
    handle: Any = None


class StoreError(Exception):
    """A request the object store failed or refused. `code` is the backend's own (an S3 error code); `transient`
    says whether trying again may help (throttling, 5xx, an unreachable endpoint)."""

    def __init__(self, message: str, code: str, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


def check_key(key: str) -> str:
    """Keys follow the one object-path rule of `ids` (a source's file names are untrusted: `../x`, `/etc/x`,
    `a\\b` and NUL all end here)."""
    try:
        return ids.check_object_path(key, "object key")
    except ids.InvalidId as e:
        raise StoreError(f"invalid {e.message}", "InvalidKey", transient=False) from e


class ObjectStore(ABC):
    @abstractmethod
    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        before_commit: Callable[[], None] | None = None,
        resume: Partial | None = None,
    ) -> None:
        """Stream `chunks` into `key`; with `resume`, `chunks` are the bytes after what that partial write stored,
        and the write continues it. `before_commit` runs once every byte is read and may raise to refuse the object
        (e.g. a hash mismatch): then nothing is left at `key`. On any other failure (the source failed, the load
        was cancelled) nothing is committed at `key`, and what was durably written stays for `partial` to find,
        until `clear_unfinished` removes it."""

    async def partial(self, key: str) -> Partial | None:
        """What an interrupted write of `key` left that a new write can continue; None if nothing usable."""
        return None

    def read_partial(self, partial: Partial) -> AsyncIterator[bytes]:
        """The bytes of a readable partial write (see `Partial.readable`)."""
        raise NotImplementedError

    async def stat(self, key: str) -> ObjectInfo | None:
        """The complete object at `key`, if there is one."""
        return next((o for o in await self.list_objects(key) if o.key == key), None)

    @abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object's bytes, from byte `offset` on (at most `length` of them)."""

    async def presigned_get(self, key: str, expires: float) -> str | None:
        """A URL that reads the object without credentials for `expires` seconds; None for a store without them."""
        return None

    @abstractmethod
    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    async def delete_keys(self, keys: list[str]) -> None: ...

    def check_configured(self) -> None:  # noqa: B027 - deliberately a no-op for usable stores
        """Raise when the store cannot be used at all (e.g. no bucket configured)."""

    async def delete_model_files(self, path: str, keep: Collection[str] = ()) -> int:
        """Remove the file `path` or everything under the directory `path/`, except what is at or under a path in
        `keep` (other models' files); return how many objects went."""

        def under(key: str, prefix: str) -> bool:
            return key == prefix or key.startswith(prefix.rstrip("/") + "/")

        keys = [
            o.key
            for o in await self._deletable(path)
            if under(o.key, path) and not any(under(o.key, other) for other in keep)
        ]
        if keys:
            await self.delete_keys(keys)
        return len(keys)

    async def clear_unfinished(self, prefix: str, keep: Collection[str] = ()) -> int:
        """Remove writes under `prefix` that were begun and never finished (failed, or their writer died), except
        those at or under a path in `keep`; return how many."""
        return 0

    async def discard_unfinished(self, key: str) -> None:
        """Remove what failed writes of `key` left (for a write that is never to be continued)."""
        await self.clear_unfinished(key)

    async def _deletable(self, prefix: str) -> list[ObjectInfo]:
        """What deleting a model's files removes: its objects and whatever leftovers the backend keeps."""
        return await self.list_objects(prefix)

    async def close(self) -> None:
        return None


class UnconfiguredStore(ObjectStore):
    """Stands in for an `s3` section without a bucket: serving works, anything needing the bucket says why not."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check_configured(self) -> None:
        raise FailedPrecondition(self.reason)

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        self.check_configured()
        return []

    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        before_commit: Callable[[], None] | None = None,
        resume: Partial | None = None,
    ) -> None:
        self.check_configured()

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        self.check_configured()
        yield b""

    async def delete_keys(self, keys: list[str]) -> None:
        self.check_configured()
