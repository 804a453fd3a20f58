"""A Hugging Face Hub stand-in: the endpoints huggingface_hub calls, over real HTTP, with fault injection.

Implements model info (`/api/models/{repo}[/revision/{rev}]`), the recursive tree listing
(`/api/models/{repo}/tree/{rev}`), and file downloads (`/{repo}/resolve/{rev}/{path}`, HEAD and GET, Range),
answering 401/404 with the X-Error-Code headers the client turns into GatedRepoError, RepositoryNotFoundError and
RevisionNotFoundError.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".onnx", ".h5", ".msgpack")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]
    # Large files (benchmarks) live on disk: path in the repo -> (local file, its sha256).
    disk: dict[str, tuple[Path, str]] = field(default_factory=dict)
    commit: str = DEFAULT_COMMIT
    gated: bool = False
    token: str = ""  # a request with "Authorization: Bearer <token>" may read a gated repo
    published_sha256: dict[str, str] = field(default_factory=dict)  # override what the listing claims
    die_after: dict[str, int] = field(default_factory=dict)  # cut the connection after N bytes of a file
    die_times: dict[str, int] = field(default_factory=dict)  # ... this many times (then serve it whole)
    throttle: float = 0.0  # seconds to sleep between 64 KiB chunks
    requests: list[str] = field(default_factory=list)
    served: int = 0  # bytes of file bodies sent, over every download


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.url = ""

    def add(self, repo_id: str, files: dict[str, bytes], **kw: object) -> Repo:
        repo = Repo(files=files, **kw)  # type: ignore[arg-type]
        self.repos[repo_id] = repo
        return repo

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}", self.info)
        app.router.add_get("/api/models/{org}/{name}/revision/{rev}", self.info)
        app.router.add_get("/api/models/{org}/{name}/tree/{rev}", self.tree)
        app.router.add_get("/api/models/{org}/{name}/tree/{rev}/{path:.+}", self.tree)
        app.router.add_route("*", "/{org}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        return app

    def _repo(self, request: web.Request) -> tuple[str, Repo]:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if repo.gated and request.headers.get("Authorization") != f"Bearer {repo.token}":
            raise web.HTTPUnauthorized(headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"})
        rev = request.match_info.get("rev", "main")
        if rev not in ("main", repo.commit):
            raise web.HTTPNotFound(headers={"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev"})
        repo.requests.append(f"{request.method} {request.path}")
        return repo_id, repo

    async def info(self, request: web.Request) -> web.Response:
        repo_id, repo = self._repo(request)
        return web.json_response(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
        )

    async def tree(self, request: web.Request) -> web.Response:
        _, repo = self._repo(request)
        entries: list[dict[str, object]] = []
        dirs: set[str] = set()
        for path in sorted(repo.files):
            data = repo.files[path]
            parts = path.split("/")[:-1]
            for i in range(len(parts)):
                dirs.add("/".join(parts[: i + 1]))
            entry: dict[str, object] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
            if path.endswith(LFS_SUFFIXES):
                sha = repo.published_sha256.get(path, hashlib.sha256(data).hexdigest())
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            entries.append(entry)
        for path, (local, sha) in sorted(repo.disk.items()):
            size = local.stat().st_size
            entries.append(
                {
                    "type": "file",
                    "oid": "0" * 40,
                    "size": size,
                    "path": path,
                    "lfs": {"oid": sha, "size": size, "pointerSize": 134},
                }
            )
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
        return web.json_response(entries)

    async def _from_disk(self, request: web.Request, repo: Repo, local: Path) -> web.StreamResponse:
        """A large file, from its Range start on, counted as it is sent."""
        size = local.stat().st_size  # noqa: ASYNC240 - a test stand-in reading a local file
        start = (request.http_range.start or 0) if request.http_range else 0
        etag = f'"{next(sha for p, sha in repo.disk.values() if p == local)}"'
        headers = {
            "X-Repo-Commit": repo.commit,
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "X-Linked-Etag": etag,
            "X-Linked-Size": str(size),
        }
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(size - start)})
        resp = web.StreamResponse(status=206 if start else 200, headers=headers)
        resp.content_length = size - start
        await resp.prepare(request)
        with local.open("rb") as f:
            f.seek(start)
            while chunk := f.read(1024 * 1024):
                await resp.write(chunk)
                repo.served += len(chunk)
                if repo.throttle:
                    await asyncio.sleep(repo.throttle)
        await resp.write_eof()
        return resp

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        _, repo = self._repo(request)
        path = request.match_info["path"]
        if path in repo.disk:
            return await self._from_disk(request, repo, repo.disk[path][0])
        if path not in repo.files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        data = repo.files[path]
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        if path.endswith(LFS_SUFFIXES):
            headers["X-Linked-Etag"] = headers["ETag"]
            headers["X-Linked-Size"] = str(len(data))
        start = 0
        if rng := request.http_range:
            start = rng.start or 0
        body = data[start:]
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(body))})
        resp = web.StreamResponse(status=206 if start else 200, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        cut = None
        if repo.die_times.get(path, 0) > 0:
            repo.die_times[path] -= 1
            cut = repo.die_after.get(path)
        sent = 0
        for i in range(0, len(body), 65536):
            chunk = body[i : i + 65536]
            if cut is not None and sent + len(chunk) > cut:
                await resp.write(chunk[: cut - sent])
                repo.served += cut - sent
                request.transport.close()  # type: ignore[union-attr]  # the connection dies mid-file
                return resp
            await resp.write(chunk)
            sent += len(chunk)
            repo.served += len(chunk)
            if repo.throttle:
                await asyncio.sleep(repo.throttle)
        await resp.write_eof()
        return resp
