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

    @abstractmethod
    async def list_files(self) -> list[RemoteFile]: ...

    @abstractmethod
    def open(self, f: RemoteFile) -> AsyncIterator[bytes]: ...


async def stream_http(
    http: aiohttp.ClientSession, url: str, what: str, headers: dict[str, str] | None = None
) -> AsyncIterator[bytes]:
    """GET `url` and yield its body; failures become transient or permanent load errors."""
    try:
        async with http.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise http_error(resp.status, what)
            async for chunk in resp.content.iter_chunked(CHUNK):
                yield chunk
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        err = classify(e)
        raise TransientError(f"{what}: {err}") from e
