"""The interface every source offers: a file list, then each file as a byte stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from model_manager.core.aio import skipping
from model_manager.core.push import ModelFacts
from model_manager.loader.errors import PermanentError, TransientError, classify, http_error

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5  # the Hub sends one (to its CDN); a registry one or two
_REDIRECTS = (301, 302, 303, 307, 308)


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
    content_name: str = ""  # what its content key names, when not the requested id (an OCI repository, not a tag)
    described: ModelFacts | None = None  # what the source itself says of the model (an OCI artifact's config)

    @property
    def pinned_revision(self) -> str:
        """The revision, if it names these exact files for good (a commit, a digest); "" if it may move."""
        return self.revision

    @property
    def single_file(self) -> bool:
        """Whether the request named one file of the source (stored as asked, whatever it is)."""
        return False

    @abstractmethod
    async def list_files(self) -> list[RemoteFile]: ...

    @abstractmethod
    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        """The file's bytes from `offset` on (a ranged read, to resume an interrupted copy)."""


@asynccontextmanager
async def http_get(
    http: aiohttp.ClientSession, url: str | URL, what: str, headers: dict[str, str] | None = None
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET `url`, following at most MAX_REDIRECTS redirects, each to http or https and never from https down to
    http (where whatever the next hop sends could be read or changed on the way); the Authorization header goes
    to the first origin only. aiohttp's own following knows neither limit."""
    current = URL(url) if isinstance(url, str) else url
    sent = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        resp = await http.get(current, headers=sent, allow_redirects=False)
        location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
        if location is None:
            try:
                yield resp
            finally:
                resp.release()
            return
        resp.release()
        target = current.join(URL(location))
        if target.scheme not in ("http", "https") or (current.scheme == "https" and target.scheme != "https"):
            raise PermanentError(f"{what}: refused a redirect from {current.scheme} to {target.scheme or 'nothing'}")
        if target.origin() != current.origin():
            sent.pop("Authorization", None)
        current = target
    raise PermanentError(f"{what}: more than {MAX_REDIRECTS} redirects")


async def stream_http(
    http: aiohttp.ClientSession, url: str | URL, what: str, headers: dict[str, str] | None = None, offset: int = 0
) -> AsyncIterator[bytes]:
    """GET `url` (from byte `offset` on, with a Range request) and yield its body; failures become transient or
    permanent load errors."""
    if offset:
        headers = {**(headers or {}), "Range": f"bytes={offset}-"}
    try:
        async with http_get(http, url, what, headers) as resp:
            if resp.status not in (200, 206):
                raise http_error(resp.status, what)
            async for chunk in skipping(resp.content.iter_chunked(CHUNK), offset if resp.status == 200 else 0):
                yield chunk
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        err = classify(e)
        raise TransientError(f"{what}: {err}") from e
