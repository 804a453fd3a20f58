"""Copying a source's files into the store: the list checked against the limits, the transfer with progress
reports that renew the claim, and what a copy that cannot finish leaves behind."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from model_manager.config import LimitsConfig
from model_manager.core.file_rule import FileRule
from model_manager.core.files import StoredFile
from model_manager.loader.claims import Beat, Claims, owner_after, owner_now
from model_manager.loader.errors import LeaseLost, PermanentError, TransientError, classify
from model_manager.loader.leftovers import leave
from model_manager.loader.metadata import MetadataReader
from model_manager.loader.progress import Progress
from model_manager.loader.retry import RetryPolicy, run_with_retries
from model_manager.loader.selection import Selection, SelectionError, choose
from model_manager.loader.sources.base import RemoteFile, Source
from model_manager.loader.transfer import Transfer
from model_manager.objectstore.base import ObjectStore

T = TypeVar("T")
Verify = Callable[[str, list[StoredFile]], Awaitable[None]]


def _resumable(error: Exception) -> bool:
    """Whether a failed transfer keeps what it stored for the next attempt: after outages, not after refusals."""
    return isinstance(classify(error), TransientError)


@dataclass(frozen=True)
class Copier:
    """Built by Jobs from its own settings, whose defaults are the loader's."""

    store: ObjectStore
    claims: Claims
    progress_interval: float
    files_at_once: int
    retry: RetryPolicy
    limits: LimitsConfig

    async def list_files(self, source: Source, rule: FileRule | None = None) -> Selection:
        """The source's file list, retried like file transfers when the failure is transient; with `rule`, the
        files a base model's load stores of it (selection.py). What is stored is checked against the limits before
        anything is written."""
        listed = await run_with_retries(self.retry, source.name, source.list_files)
        try:
            chosen = Selection(listed) if rule is None else await choose(source, listed, rule)
        except SelectionError as e:
            raise PermanentError(str(e)) from e
        files = chosen.files
        if len(files) > self.limits.files_per_model:
            raise PermanentError(
                f"{source.name} has {len(files)} files, more than limits.filesPerModel ({self.limits.files_per_model})"
            )
        size = sum(f.size or 0 for f in files)
        if size > self.limits.bytes_per_model:
            raise PermanentError(
                f"{source.name} is {size} bytes, more than limits.bytesPerModel ({self.limits.bytes_per_model})"
            )
        return chosen

    async def copy(
        self,
        source: Source,
        files: list[RemoteFile],
        prefix: str,
        beat: Beat | None,
        metadata: MetadataReader | None = None,
        content_key: str | None = None,
        verify: Verify | None = None,
    ) -> list[StoredFile]:
        """Copy `files` under `prefix`. `content_key` is given for base models ("" when their revision is unknown):
        their directory is then recorded on the loading row before the first byte is stored. `verify` checks what
        was stored; a PermanentError from it refuses the copy like a bad file, whose files are removed."""
        progress = Progress(sum(f.size or 0 for f in files), len(files))
        transfer = Transfer(self.store, progress, self.retry, self.files_at_once, metadata=metadata)
        cleanup = functools.partial(transfer.cleanup, prefix)
        if beat is not None:
            if content_key is not None:
                # Deleting this model removes what its load wrote; deleting another of this content now keeps it.
                progress.content_path, progress.content_key = prefix, content_key
            # Before the first byte: the size, which the server holds against the tenant's quota.
            await beat(progress)
        try:
            work = self._copy_all(transfer, source, files, prefix, verify)
            return await (self.with_heartbeat(work, progress, beat) if beat else work)
        except LeaseLost as lost:
            # Deleted, or another loader holds it (one frozen past its lease may come back after that loader
            # completed the model).
            await leave(self.store, prefix, owner_after(lost), await self.claims.loaded_owns(content_key), cleanup)
            raise
        except Exception as e:
            if _resumable(e):
                # A source or store outage: what is stored (whole files, parts of open uploads) stays, and the next
                # attempt continues from it. Deleting the model removes it.
                raise
            # A refusal (a bad file). It may also come from having lost the claim without a report saying so yet
            # (a loader frozen past its lease finds its temporary files gone), so ask whose the keys are.
            owner = await owner_now(beat, progress)
            await leave(self.store, prefix, owner, await self.claims.loaded_owns(content_key), cleanup)
            raise
        # Cancelled (the loader is stopping): what is stored stays for the next loader to continue from.

    @staticmethod
    async def _copy_all(
        transfer: Transfer, source: Source, files: list[RemoteFile], prefix: str, verify: Verify | None
    ) -> list[StoredFile]:
        stored = await transfer.copy_all(source, files, prefix)
        if verify is not None:
            await verify(prefix, stored)
        return stored

    async def with_heartbeat(self, work: Awaitable[T], progress: Progress, beat: Beat) -> T:
        """Run `work` while reporting progress (which renews the lease); a refused report stops the work."""

        async def heart() -> None:
            while True:
                await asyncio.sleep(self.progress_interval)
                await beat(progress)

        try:
            async with asyncio.TaskGroup() as tg:
                heartbeat = tg.create_task(heart())
                try:
                    result = await work
                finally:
                    heartbeat.cancel()
        except BaseExceptionGroup as group:
            lost = [e for e in group.exceptions if isinstance(e, LeaseLost)]
            raise (lost[0] if lost else group.exceptions[0]) from group
        return result
