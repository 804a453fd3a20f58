"""Moving files from a source into the store: streamed, hashed on the way, verified, retried, cleaned up."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from model_manager.core import metrics
from model_manager.core.aio import first_error
from model_manager.core.files import StoredFile
from model_manager.core.units import human_bytes
from model_manager.loader.errors import PermanentError, TransientError
from model_manager.loader.metadata import FileWatcher, MetadataReader
from model_manager.loader.progress import Progress
from model_manager.loader.retry import RetryPolicy, run_with_retries
from model_manager.loader.sources.base import RemoteFile, Source
from model_manager.objectstore.base import ObjectStore, Partial

log = logging.getLogger(__name__)

# Sources deliver what the network handed over (about 256 KiB at a time over HTTP). The bytes are gathered into
# blocks of this size before they are hashed and stored, so that the thread hops that keep hashing and writing off
# the event loop are paid once per block, not once per network read.
BLOCK = 4 * 1024 * 1024

T = TypeVar("T")


async def blocks(chunks: AsyncIterator[bytes], size: int = BLOCK) -> AsyncIterator[bytes]:
    """The same bytes in blocks of `size` (the last one shorter); chunks already that large pass as they are."""
    held: list[bytes] = []
    have = 0
    async for chunk in chunks:
        if not held and len(chunk) >= size:
            yield chunk
            continue
        held.append(chunk)
        have += len(chunk)
        if have >= size:
            yield b"".join(held)
            held, have = [], 0
    if held:
        yield b"".join(held)


class Verifier:
    """Hashes a file's bytes as they pass and checks them against what the source published.

    Each block is hashed in a thread (hashlib lets go of the GIL), in order, while the store writes it: `update`
    waits only for the previous block's hash, and `finish` for the last one.
    """

    def __init__(self, f: RemoteFile, what: str, size: int = 0) -> None:
        self.f = f
        self.what = what
        self.size = size  # bytes already counted (a resumed file whose stored part is hashed after commit)
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(f"blob {f.size}\0".encode()) if f.git_sha1 and f.size is not None else None
        self._hashing: asyncio.Future[None] | None = None

    async def update(self, block: bytes) -> None:
        await self.finish()
        self.size += len(block)
        self._hashing = asyncio.ensure_future(asyncio.to_thread(self._update, block))

    async def finish(self) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            await hashing

    def _update(self, block: bytes) -> None:
        self.sha256.update(block)
        if self.git is not None:
            self.git.update(block)

    def check_size(self) -> None:
        if self.f.size is not None and self.size != self.f.size:
            raise PermanentError(f"{self.what}: size mismatch, expected {self.f.size} bytes, got {self.size}")

    def check(self) -> None:
        self.check_size()
        got = self.sha256.hexdigest()
        if self.f.sha256 and got != self.f.sha256.lower():
            raise PermanentError(f"{self.what}: sha256 mismatch, expected {self.f.sha256}, got {got}")
        if self.git is not None and self.git.hexdigest() != self.f.git_sha1:
            raise PermanentError(f"{self.what}: content does not match the source's git blob id {self.f.git_sha1}")


@dataclass
class Transfer:
    """One model's transfer. Remembers every key it began to write, so a failed load can remove it all (a copy
    cancelled at the very moment it committed would otherwise leave its object behind unrecorded)."""

    store: ObjectStore
    progress: Progress
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    files_at_once: int = 4
    touched: list[str] = field(default_factory=list)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    metadata: MetadataReader | None = None  # reads what the model is from the files' leading bytes

    async def _verified(
        self, chunks: AsyncIterator[bytes], verifier: Verifier, watcher: FileWatcher | None
    ) -> AsyncIterator[bytes]:
        try:
            async for block in blocks(chunks):
                await verifier.update(block)
                if watcher is not None:
                    watcher.feed(block)
                yield block
            await verifier.finish()  # before the store commits the file and asks for the check
        finally:
            await verifier.finish()  # a failed or cancelled copy leaves no hashing thread behind

    async def _read_through(
        self, chunks: AsyncIterator[bytes], verifier: Verifier, watcher: FileWatcher | None
    ) -> None:
        """Hash (and read what the file says) bytes already stored, as `_verified` does for those arriving."""
        async for _ in self._verified(chunks, verifier, watcher):
            pass

    async def copy(self, source: Source, f: RemoteFile, key: str) -> StoredFile:
        what = f"{source.name}: {f.path}"  # the form sources use in their own errors, so it is not said twice
        self.touched.append(key)
        transferred = metrics.BYTES_TRANSFERRED.labels(source.kind)

        async def attempt() -> StoredFile:
            present = await self._present(f, key, what)
            if present is not None:
                return present
            resume = await self._resumable(f, key)
            verifier = Verifier(f, what)
            watcher = self.metadata.watch(f.path) if self.metadata is not None else None  # anew on a retry
            offset = resume.size if resume is not None else 0
            if resume is not None and resume.readable:
                # The stored bytes are hashed first, so the file's sha256 still covers every byte, in order.
                await self._read_through(self.store.read_partial(resume), verifier, watcher)
            elif resume is not None:
                # Not readable before the upload completes (S3 parts): counted now, hashed after completion.
                verifier, watcher = Verifier(f, what, size=offset), None
            arrived = 0

            async def counted() -> AsyncIterator[bytes]:
                # Progress counts bytes as they arrive, not as blocks fill: on a slow link a block takes a while.
                nonlocal arrived
                async for chunk in source.open(f, offset):
                    arrived += len(chunk)
                    self.progress.add_bytes(len(chunk))
                    transferred.inc(len(chunk))
                    yield chunk

            if offset:
                self.progress.add_resumed(offset)
                log.info("%s: resuming after %s already stored", what, human_bytes(offset))
            deferred = resume is not None and not resume.readable
            try:
                check = verifier.check_size if deferred else verifier.check
                await self.store.upload(key, self._verified(counted(), verifier, watcher), check, resume)
            except Exception:
                self.progress.restart_file(arrived, offset)  # a retry starts over from what is stored then
                raise
            if deferred:
                stored = await self._reread(f, key, what)
                if stored is None:
                    self.progress.restart_file(arrived, offset)
                    await self.store.delete_keys([key])
                    raise TransientError(f"{what}: the resumed upload did not verify; starting the file over")
                self.progress.file_done()
                return stored
            self.progress.file_done()
            if watcher is not None:
                watcher.close()
            return StoredFile(path=f.path, size=verifier.size, sha256=verifier.sha256.hexdigest())

        return await run_with_retries(self.retry, what, attempt, self.sleep)

    async def _resumable(self, f: RemoteFile, key: str) -> Partial | None:
        """What an interrupted copy of `f` left at `key` that this one can continue."""
        if f.size is None:
            return None
        resume = await self.store.partial(key)
        if resume is None or resume.size > f.size:
            return None
        return resume

    async def _present(self, f: RemoteFile, key: str, what: str) -> StoredFile | None:
        """`f` already stored whole at `key` (an earlier attempt finished this file): read back and verified against
        the source's size and hashes instead of copied again."""
        info = await self.store.stat(key)
        if info is None or f.size is None or info.size != f.size:
            return None
        stored = await self._reread(f, key, what)
        if stored is None:
            return None  # something else: copied over
        self.progress.add_resumed(info.size)
        self.progress.file_done()
        log.info("%s: already stored whole and verified; not copied again", what)
        return stored

    async def _reread(self, f: RemoteFile, key: str, what: str) -> StoredFile | None:
        """Hash the object at `key` (and read what the file says the model is); None if it does not match what the
        source published. Without a published hash only the size can be checked."""
        verifier = Verifier(f, what)
        watcher = self.metadata.watch(f.path) if self.metadata is not None else None
        await self._read_through(self.store.read(key), verifier, watcher)
        try:
            verifier.check()
        except PermanentError as e:
            log.warning("%s", e)
            return None
        if watcher is not None:
            watcher.close()
        return StoredFile(path=f.path, size=verifier.size, sha256=verifier.sha256.hexdigest())

    async def copy_all(self, source: Source, files: list[RemoteFile], prefix: str) -> list[StoredFile]:
        """Copy every file under `prefix`, several at once; the first failure stops the rest."""
        gate = asyncio.Semaphore(self.files_at_once)

        async def one(f: RemoteFile) -> StoredFile:
            async with gate:
                return await self.copy(source, f, f"{prefix}/{f.path}")

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(f)) for f in files]
        except BaseExceptionGroup as group:
            raise first_error(group) from group
        return [t.result() for t in tasks]

    async def cleanup(self, prefix: str) -> None:
        """Delete what this transfer wrote and the unfinished writes under `prefix` (a load that failed for good
        leaves nothing behind)."""
        keys, self.touched = self.touched, []
        try:
            if keys:
                await self.store.delete_keys(keys)
            await self.store.clear_unfinished(prefix.rstrip("/") + "/")
        except Exception:
            log.exception("could not remove %d objects of a failed load: %s", len(keys), keys[:5])
