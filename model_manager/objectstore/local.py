"""A local directory used as the object store (the embedded default).

Writes go to a temporary name and are renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from model_manager.objectstore.base import ObjectInfo, ObjectStore, check_key

READ_CHUNK = 1024 * 1024
FILE_MODE = 0o640  # readable by the group, as a model directory shared with inference engines needs


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def upload(
        self, key: str, chunks: AsyncIterator[bytes], before_commit: Callable[[], None] | None = None
    ) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            # mkstemp makes files private to this user; inference engines often run as another user of the group.
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    await asyncio.to_thread(f.write, chunk)
            if before_commit is not None:
                before_commit()
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # noqa: ASYNC240 - one quick local call on the failure path
            raise

    async def read(self, key: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(self._path(key).open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
                yield chunk
        finally:
            f.close()

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list_objects, prefix)

    def _list_objects(self, prefix: str) -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names, not the whole store.
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.endswith(".part") and name.startswith("."):
                    continue  # a write in progress
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(ObjectInfo(key=key, size=full.stat().st_size))
        return sorted(out, key=lambda o: o.key)

    async def delete_keys(self, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Remove directories the deletion emptied, up to the store root.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
