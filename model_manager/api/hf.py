"""The Hugging Face protocol under `/hf` on the REST port: engines download stored models with
`HF_ENDPOINT=<server>/hf` and `HF_TOKEN=<an API key>`, as they would from the Hub.

What huggingface_hub (`snapshot_download`, `hf_hub_download`, `HfApi.model_info`, `list_repo_tree`) and the `hf`
command call:
- `GET /hf/api/models/{repo}[/revision/{rev}]`: the repo's info, `sha` and `siblings` (with sizes and sha256);
- `GET /hf/api/models/{repo}/tree/{rev}[/{path}]`: the tree (`?recursive=true`), paginated by a `Link` header;
- `HEAD|GET /hf/{repo}/resolve/{rev}/{file}`: the file, with the Hub's headers (`X-Repo-Commit`, `ETag`,
  `X-Linked-Etag`, `X-Linked-Size`) and `Range` (206; 416 past the end), streamed from the object store a chunk at a
  time; or, with `http.hfRedirect` on an S3 store, a 302 to a presigned URL of the object.

Refusals carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound), which huggingface_hub turns
into its own exceptions. Keys and walls are the REST port's: the front middleware authenticates every request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from model_manager.core.errors import NotFound, Unavailable
from model_manager.core.files import StoredFile
from model_manager.core.identity import Identity
from model_manager.objectstore.base import ObjectStore, StoreError
from model_manager.service.serving import RevisionNotFound, Serving, StoredRepo

log = logging.getLogger(__name__)

TREE_PAGE = 1000  # entries per tree page, as the Hub pages a listing without expanded metadata
WRITE_BYTES = 1 << 20
LFS_POINTER_SIZE = 134  # what a git-lfs pointer file of a sha256 takes; the Hub reports it per LFS file


def _refused(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"X-Error-Code": code, "X-Error-Message": message}
    )


class HfFront:
    def __init__(
        self,
        serving: Serving,
        store: ObjectStore,
        who: Callable[[web.Request], Identity],
        redirect_expiry: float | None = None,
    ) -> None:
        self.serving = serving
        self.store = store
        self.who = who
        self.redirect_expiry = redirect_expiry  # None: stream through this server

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/hf/api/models/{rest:.+}", self.api)
        app.router.add_get("/hf/{rest:.+}", self.resolve)  # HEAD too

    async def _repo(self, request: web.Request, repo_id: str, revision: str) -> StoredRepo | web.Response:
        try:
            return await self.serving.repo(self.who(request), repo_id, revision)
        except RevisionNotFound as e:
            return _refused(404, "RevisionNotFound", e.message)
        except NotFound as e:
            return _refused(404, "RepoNotFound", e.message)

    # ---- the API: info and tree ---------------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["rest"].split("/")
        # A repo id is "namespace/name" or "name": "name/revision/..." and "name/tree/..." are of the second kind.
        cut = 1 if len(parts) > 1 and parts[1] in ("revision", "tree") else 2
        repo_id, tail = "/".join(parts[:cut]), parts[cut:]
        if not tail:
            return await self._info(request, repo_id, "main")
        if tail[0] == "revision" and len(tail) > 1:
            return await self._info(request, repo_id, "/".join(tail[1:]))
        if tail[0] == "tree" and len(tail) > 1:
            return await self._tree(request, repo_id, tail[1], "/".join(tail[2:]))
        return _refused(404, "EntryNotFound", f"no such API path: {request.path}")

    async def _info(self, request: web.Request, repo_id: str, revision: str) -> web.StreamResponse:
        repo = await self._repo(request, repo_id, revision)
        if isinstance(repo, web.Response):
            return repo
        return web.json_response(
            {
                "_id": repo.commit[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": True,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [_sibling(f) for f in sorted(repo.files, key=lambda f: f.path)],
            }
        )

    async def _tree(self, request: web.Request, repo_id: str, revision: str, below: str) -> web.StreamResponse:
        repo = await self._repo(request, repo_id, revision)
        if isinstance(repo, web.Response):
            return repo
        recursive = request.query.get("recursive", "").lower() in ("1", "true")
        entries = _tree_entries(repo.files, below.strip("/"), recursive)
        if entries is None:
            return _refused(404, "EntryNotFound", f"{below} does not exist in {repo_id} at {repo.commit}")
        try:
            start = max(0, int(request.query.get("cursor", "0")))
        except ValueError:
            start = 0
        page = entries[start : start + TREE_PAGE]
        response = web.json_response(page)
        if start + TREE_PAGE < len(entries):
            following = request.url.update_query(cursor=str(start + TREE_PAGE))
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response

    # ---- files ----------------------------------------------------------------------------------------------

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["rest"].split("/")
        at = next((i for i in (1, 2) if len(parts) > i + 2 and parts[i] == "resolve"), 0)
        if not at:
            return _refused(404, "RepoNotFound", f"no such path: {request.path}")
        repo_id, revision, path = "/".join(parts[:at]), parts[at + 1], "/".join(parts[at + 2 :])
        repo = await self._repo(request, repo_id, revision)
        if isinstance(repo, web.Response):
            return repo
        found = repo.file(path)
        if found is None:
            return _refused(404, "EntryNotFound", f"{path} does not exist in {repo_id} at {repo.commit}")
        key = f"{repo.path}/{found.path}"
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{found.sha256}"',
            "X-Linked-Etag": f'"{found.sha256}"',
            "X-Linked-Size": str(found.size),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if self.redirect_expiry is not None:
            try:
                url = await self.store.presigned_get(key, self.redirect_expiry)
            except StoreError as e:
                raise Unavailable(f"the object store cannot sign a URL right now, try again: {e}") from e
            if url is not None:
                return web.Response(status=302, headers={**headers, "Location": url})
        span = _span(request, found.size)
        if span is None:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{found.size}"})
        start, end = span
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(end - start)})
        return await self._stream(request, key, found, start, end, headers)

    async def _stream(
        self, request: web.Request, key: str, found: StoredFile, start: int, end: int, headers: dict[str, str]
    ) -> web.StreamResponse:
        chunks = self.store.read(key, start, end - start)
        try:
            first = await anext(chunks, b"")  # before the headers: a file gone from the store is still a 404
        except StoreError as e:
            if e.code in ("NoSuchKey", "ENOENT", "404"):
                return _refused(404, "EntryNotFound", f"{found.path} is no longer stored")
            raise Unavailable(f"the object store cannot be read right now, try again: {e}") from e
        partial = (start, end) != (0, found.size)
        response = web.StreamResponse(status=206 if partial else 200, headers=headers)
        if partial:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{found.size}"
        response.content_length = end - start
        await response.prepare(request)
        try:
            # The store hands over what its connection has (about 128 KiB from S3); writing a mebibyte at a time
            # costs a quarter of the writes. Each write waits while the client is slower: memory stays bounded.
            pending = bytearray(first)
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    await response.write(bytes(pending))
                    pending.clear()
            await response.write(bytes(pending))
            await response.write_eof()
        except (StoreError, ConnectionError) as e:
            # The headers are sent: the client sees a short body (its Content-Length says so) and resumes with Range.
            log.warning("download of %s stopped after the headers: %s", key, e)
            if request.transport is not None:
                request.transport.close()
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return response


def _sibling(f: StoredFile) -> dict[str, Any]:
    return {
        "rfilename": f.path,
        "size": f.size,
        "blobId": _blob_id(f),
        "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE},
    }


def _blob_id(f: StoredFile) -> str:
    # The Hub's blob id is a git object id (40 hex); every stored file is served as an LFS file, whose id this is.
    return f.sha256[:40]


def _tree_entries(files: tuple[StoredFile, ...], below: str, recursive: bool) -> list[dict[str, Any]] | None:
    """The tree under `below` ("" for the root), directories first at each level as the Hub lists them; None when
    `below` is neither a directory nor a file of the repo."""
    prefix = f"{below}/" if below else ""
    under = [f for f in files if f.path.startswith(prefix)]
    exact = [f for f in files if f.path == below]
    if below and not under:
        return [_file_entry(f) for f in exact] if exact else None
    dirs: set[str] = set()
    listed: list[StoredFile] = []
    for f in under:
        rest = f.path[len(prefix) :].split("/")
        for depth in range(1, len(rest)):
            if recursive or depth == 1:
                dirs.add(prefix + "/".join(rest[:depth]))
        if recursive or len(rest) == 1:
            listed.append(f)
    entries = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
    return entries + [_file_entry(f) for f in sorted(listed, key=lambda f: f.path)]


def _file_entry(f: StoredFile) -> dict[str, Any]:
    return {
        "type": "file",
        "oid": _blob_id(f),
        "size": f.size,
        "path": f.path,
        "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE},
    }


def _span(request: web.Request, size: int) -> tuple[int, int] | None:
    """The byte span a Range header asks for, as [start, end); the whole file without one (or with one that is not
    a single byte range, which HTTP says to ignore); None when it lies past the end (416)."""
    try:
        asked = request.http_range
    except ValueError:
        return 0, size
    if asked.start is None and asked.stop is None:
        return 0, size
    if asked.start is not None and asked.start < 0:  # "bytes=-N": the last N bytes
        return (max(0, size + asked.start), size) if size else None
    start = asked.start or 0
    end = size if asked.stop is None else min(asked.stop, size)
    if start >= size or end <= start:
        return None
    return start, end
