"""Hugging Face through huggingface_hub's public API: HF_ENDPOINT and HF_TOKEN work as users expect."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import httpx2
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from model_manager.core.ids import HuggingFaceRef
from model_manager.loader.errors import PermanentError, SourceDenied, SourceNotFound, TransientError
from model_manager.loader.formats import is_client_artifact
from model_manager.loader.sources.base import CHUNK, RemoteFile, Source, stream_http

T = TypeVar("T")


_COMMIT = re.compile(r"[0-9a-f]{40}")


class HuggingFaceSource(Source):
    kind = "hugging-face"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ref: HuggingFaceRef,
        endpoint: str | None = None,
        cache_dir: str = "",
    ) -> None:
        self.http = http
        self.ref = ref
        self.endpoint = endpoint  # None: huggingface_hub's own default, which honours HF_ENDPOINT
        self.cache_dir = cache_dir
        self.token: str | None = None  # huggingface_hub reads HF_TOKEN / HUGGING_FACE_HUB_TOKEN itself
        self.name = f"Hugging Face repo {ref.repo}" + (f" file {ref.file}" if ref.file else "")
        self.revision = ""

    @property
    def pinned_revision(self) -> str:
        # A branch or tag moves; only a commit names the files for good.
        return self.revision if _COMMIT.fullmatch(self.revision) else ""

    @property
    def single_file(self) -> bool:
        return bool(self.ref.file)

    async def _hub(self, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except GatedRepoError as e:
            raise SourceDenied(
                f"{self.name} is gated: accept its terms on the Hub and give the loader a token (HF_TOKEN)"
            ) from e
        except RepositoryNotFoundError as e:
            raise SourceNotFound(f"{self.name} not found (or private without a valid HF_TOKEN)") from e
        except RevisionNotFoundError as e:
            raise SourceNotFound(f"revision {self.ref.revision!r} not found in {self.name}") from e
        except EntryNotFoundError as e:
            raise SourceNotFound(f"{self.name}: file not found") from e
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            kind = TransientError if status == 429 or status >= 500 else PermanentError
            raise kind(f"{self.name}: Hub answered HTTP {status}") from e
        except (httpx2.TransportError, OSError, TimeoutError) as e:
            # huggingface_hub talks to the Hub through httpx2: refused or reset connections and timeouts.
            raise TransientError(f"{self.name}: cannot reach the Hub ({type(e).__name__}: {e})") from e

    async def list_files(self) -> list[RemoteFile]:
        api = HfApi(endpoint=self.endpoint, token=self.token)
        info = await self._hub(lambda: api.model_info(self.ref.repo, revision=self.ref.revision or None))
        # Pin every later request to the commit, so the files all come from one revision.
        self.revision = info.sha or self.ref.revision
        entries: list[Any] = await self._hub(
            lambda: list(api.list_repo_tree(self.ref.repo, revision=self.revision, recursive=True))
        )
        files = [
            RemoteFile(
                path=e.path,
                size=e.size,
                sha256=e.lfs.sha256 if e.lfs is not None else None,
                git_sha1=None if e.lfs is not None else e.blob_id,
            )
            for e in entries
            if hasattr(e, "size") and not is_client_artifact(e.path)
        ]
        if self.ref.file:
            files = [f for f in files if f.path == self.ref.file]
            if not files:
                raise SourceNotFound(f"{self.name}: no file {self.ref.file!r} in the repo at {self.revision}")
        return files

    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        if self.cache_dir:
            return self._from_cache(f, offset)
        url = hf_hub_url(self.ref.repo, f.path, revision=self.revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)
        return stream_http(self.http, url, f"{self.name}: {f.path}", headers, offset)

    async def _from_cache(self, f: RemoteFile, offset: int) -> AsyncIterator[bytes]:
        """Through huggingface_hub's cache (kept across loads), then from the cached file."""
        local = await self._hub(
            lambda: hf_hub_download(
                self.ref.repo,
                f.path,
                revision=self.revision,
                cache_dir=self.cache_dir,
                token=self.token,
                endpoint=self.endpoint,
            )
        )
        fh = await asyncio.to_thread(Path(local).open, "rb")
        try:
            fh.seek(offset)
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            fh.close()
