"""The interface every source offers: a file list, then each file as a byte stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from model_manager.loader.errors import TransientError, classify, http_error

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the model's root in the store
    size: int | None
    sha256: str | None = None  # published by the source (HF LFS files, Ollama blobs)
    git_sha1: str | None = None  # a git blob id (HF non-LFS files)
    source_key: str = ""  # the source's own name for the file, when it differs from path


class Source(ABC):
    kind: str  # the source's kind as metrics label it: hugging-face, ollama, object-store
    name: str  # e.g. "Hugging Face repo org/name": used in failure reasons
    revision: str = ""  # the revision actually loaded, once known

    @property
    def pinned_revision(self) -> str:
        """The revision, if it names these exact files for good (a commit, a digest); "" if it may move."""
        return self.revision

    @abstractmethod
    async def list_files(self) -> list[RemoteFile]: ...

    @abstractmethod
    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        """The file's bytes from `offset` on (a ranged read, to resume an interrupted copy)."""


async def stream_http(
    http: aiohttp.ClientSession, url: str, what: str, headers: dict[str, str] | None = None, offset: int = 0
) -> AsyncIterator[bytes]:
    """GET `url` (from byte `offset` on, with a Range request) and yield its body; failures become transient or
    permanent load errors."""
    if offset:
        headers = {**(headers or {}), "Range": f"bytes={offset}-"}
    try:
        async with http.get(url, headers=headers) as resp:
            if resp.status not in (200, 206):
                raise http_error(resp.status, what)
            skip = offset if resp.status == 200 else 0  # a server that ignores Range sends the whole file
            async for chunk in resp.content.iter_chunked(CHUNK):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                yield chunk
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        err = classify(e)
        raise TransientError(f"{what}: {err}") from e
