"""A local directory used as the object store (the embedded default).

Writes go to a temporary name (`.<name>.<random>.part`) and are renamed into place, so a reader never sees a
half-written file. A write that fails (its source broke off, its loader was stopped or killed) leaves its temporary
file behind: the next write of the same key continues it (`partial`), and `clear_unfinished` or a deletion of the
model's files removes it. Errors name keys, never the server's absolute paths.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from model_manager.objectstore.base import ObjectInfo, ObjectStore, Partial, StoreError, check_key

READ_CHUNK = 1024 * 1024
FILE_MODE = 0o640  # readable by the group, as a model directory shared with inference engines needs


def _is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(".part")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, "EIO")
        raise StoreError(f"local store: cannot {what}: {e.strerror or e}", code, transient=False) from e


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        before_commit: Callable[[], None] | None = None,
        resume: Partial | None = None,
    ) -> None:
        path = self._path(key)
        with _translated(f"write {key}"):
            # In the loop, not a thread: a load cancelled while a thread created the temporary file would leave it
            # behind with nobody to remove it. These are a few quick local calls.
            fd, tmp = self._continue(resume) if resume is not None else self._begin(path)
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:  # the source's own errors pass through untranslated
                with _translated(f"write {key}"):
                    await asyncio.to_thread(f.write, chunk)
        try:
            if before_commit is not None:
                before_commit()
            with _translated(f"write {key}"):
                await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # noqa: ASYNC240 - one quick local call on the failure path
            raise

    @staticmethod
    def _continue(partial: Partial) -> tuple[int, str]:
        tmp = str(partial.handle)
        fd = os.open(tmp, os.O_WRONLY)
        os.ftruncate(fd, partial.size)  # a torn last write of the interrupted writer goes
        os.lseek(fd, partial.size, os.SEEK_SET)
        return fd, tmp

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with _translated(f"stat {key}"):
            try:
                st = await asyncio.to_thread(path.stat)
            except FileNotFoundError:
                return None
        return ObjectInfo(key=key, size=st.st_size) if stat.S_ISREG(st.st_mode) else None

    async def partial(self, key: str) -> Partial | None:
        path = self._path(key)
        with _translated(f"list {key}"):
            found = await asyncio.to_thread(
                lambda: [(p.stat().st_size, p) for p in path.parent.glob(f".{path.name}.*.part")]
            )
        if not found:
            return None
        size, tmp = max(found)
        return Partial(key, size, readable=True, handle=tmp) if size else None

    async def read_partial(self, partial: Partial) -> AsyncIterator[bytes]:
        with _translated(f"read {partial.key}"):
            f = await asyncio.to_thread(Path(partial.handle).open, "rb")
        try:
            left = partial.size
            while left:
                with _translated(f"read {partial.key}"):
                    chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, left))
                if not chunk:
                    raise StoreError(f"local store: {partial.key} shrank while it was resumed", "EIO", transient=True)
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    @staticmethod
    def _begin(path: Path) -> tuple[int, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of an earlier write of this key that was killed: this claim owns the key now.
        for stale in path.parent.glob(f".{path.name}.*.part"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        # mkstemp makes files private to this user; inference engines often run as another user of the group.
        os.fchmod(fd, FILE_MODE)
        return fd, tmp

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        with _translated(f"read {key}"):
            f = await asyncio.to_thread(self._path(key).open, "rb")
        try:
            f.seek(offset)
            left = -1 if length is None else length
            while left:
                with _translated(f"read {key}"):
                    chunk = await asyncio.to_thread(f.read, READ_CHUNK if left < 0 else min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk) if left > 0 else 0
                yield chunk
        finally:
            f.close()

    async def clear_unfinished(self, prefix: str, keep: Collection[str] = ()) -> int:
        def kept(key: str) -> bool:
            directory = key.rsplit("/", 1)[0]
            return any(directory == k or directory.startswith(k.rstrip("/") + "/") for k in keep)

        partial = [
            o.key for o in await self._deletable(prefix) if _is_partial(o.key.rsplit("/", 1)[-1]) and not kept(o.key)
        ]
        if partial:
            await self.delete_keys(partial)
        return len(partial)

    async def discard_unfinished(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            for tmp in path.parent.glob(f".{path.name}.*.part"):
                tmp.unlink(missing_ok=True)

        with _translated(f"remove unfinished writes of {key}"):
            await asyncio.to_thread(remove)

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        with _translated(f"list {prefix}"):
            return await asyncio.to_thread(self._list_objects, prefix, False)

    async def _deletable(self, prefix: str) -> list[ObjectInfo]:
        with _translated(f"list {prefix}"):
            return await asyncio.to_thread(self._list_objects, prefix, True)

    def _list_objects(self, prefix: str, partial: bool) -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names, not the whole store.
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if _is_partial(name) and not partial:
                    continue  # a write in progress
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(ObjectInfo(key=key, size=full.stat().st_size))
        return sorted(out, key=lambda o: o.key)

    async def delete_keys(self, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: list[str]) -> None:
        """Delete every key it can, then report the first that failed: one bad key must not keep the rest."""
        failed: list[tuple[str, OSError]] = []
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
                # Remove directories the deletion emptied, up to the store root.
                parent = path.parent
                while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            except OSError as e:
                failed.append((key, e))
        if failed:
            first_key, error = failed[0]
            code = errno.errorcode.get(error.errno or 0, "EIO")
            message = (
                f"local store: cannot delete {first_key}: {error.strerror or error} "
                f"({len(failed)} of {len(keys)} failed)"
            )
            raise StoreError(message, code, transient=False)
