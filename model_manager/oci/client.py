"""One registry, spoken to over the OCI distribution protocol: manifests, blobs, uploads, and the auth dance.

Uploads stream: a blob goes up in one PUT when it fits in a chunk, else as PATCHes of `chunk_size` bytes, each read
from the caller's `read(offset, length)` as it is sent, so memory stays at a chunk's buffers whatever the blob's size.
A chunk cut short is resumed from what the registry says it holds (GET on the upload's location answers `Range`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from model_manager.config import OciConfig
from model_manager.core.aio import skipping
from model_manager.oci.auth import Login, Logins, parse_challenge
from model_manager.oci.errors import RegistryDenied, RegistryError, RegistryNotFound, from_response

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX))
MAX_MANIFEST = 4 << 20  # the distribution spec's limit that registries apply
MAX_REDIRECTS = 5
CHUNK_RETRIES = 3
RESUME_PAUSE = 0.2  # seconds
_REDIRECTS = (301, 302, 303, 307, 308)
# What a registry that takes no chunked uploads answers the first PATCH: bad request, not allowed, unsupported.
_NO_CHUNKS = (400, 405, 415, 501)

Reader = Callable[[int, int], AsyncIterator[bytes]]  # (offset, length) -> that span of the blob


@dataclass(frozen=True)
class _Blob:
    """One blob being uploaded, and whom to tell of its progress."""

    uploads: URL  # the repository's /blobs/uploads/, to start an upload over
    digest: str
    size: int
    read: Reader
    sent: Callable[[int], None]
    scope: str
    what: str


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str  # sha256:<hex> of body


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bytes_reader(data: bytes) -> Reader:
    """A reader of bytes held in memory (a config blob)."""

    async def read(offset: int, length: int) -> AsyncIterator[bytes]:
        yield data[offset : offset + length]

    return read


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class Registry:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        host: str,
        login: Login | None = None,
        insecure: bool = False,
        chunk_size: int = 64 << 20,
    ) -> None:
        self.http = http
        self.host = host
        self.login = login
        self.base = URL(f"{'http' if insecure else 'https'}://{host}")
        self.chunk_size = chunk_size
        self._basic = False  # the registry asked for Basic: send the login with every request
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (bearer token, monotonic expiry)

    @classmethod
    def configured(cls, http: aiohttp.ClientSession, host: str, config: OciConfig, logins: Logins) -> Registry:
        """The registry at `host` as the operator set it up: its login, TLS unless listed insecure, the chunk size."""
        return cls(http, host, logins.get(host), host in config.insecure_registries, config.chunk_size)

    # ---- auth ---------------------------------------------------------------------------------------------

    def _authorization(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        if self._basic and self.login is not None:
            return {"Authorization": self.login.basic()}
        return {}

    async def _answer(self, header: str, scope: str, what: str) -> None:
        """Meet a 401's challenge for `scope`, or raise RegistryDenied saying why it cannot be met."""
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self.login is None or self._basic:
                raise RegistryDenied(self._refused(what))
            self._basic = True
            return
        if challenge.scheme != "bearer" or not challenge.params.get("realm"):
            raise RegistryDenied(f"{what}: the registry asks for {header[:80]!r}, which this client cannot answer")
        realm = URL(challenge.params["realm"])
        service = [("service", challenge.params["service"])] if "service" in challenge.params else []
        url = realm.update_query([*service, *(("scope", s) for s in scope.split(" "))])
        headers = {"Authorization": self.login.basic()} if self.login is not None else {}
        try:
            async with self.http.get(url, headers=headers) as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    raise RegistryDenied(self._refused(what))
                if resp.status != 200:
                    raise from_response(resp.status, body, f"{what}: token from {realm.host}")
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"{what}: cannot reach the token service {realm.host} ({e})", transient=True) from e
        except ValueError as e:
            raise RegistryError(f"{what}: the token service {realm.host} answered no JSON") from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{what}: the token service {realm.host} answered no token")
        lifetime = doc.get("expires_in") if isinstance(doc.get("expires_in"), int) else 60
        # Renew a little early: a token that expires between check and use costs a refused request.
        self._tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 5))

    def _refused(self, what: str) -> str:
        if self.login is None:
            return (
                f"{what}: the registry {self.host} wants credentials and none are configured for it "
                "(oci.credentials or a Docker config.json)"
            )
        return f"{what}: the registry {self.host} refused the credentials of {self.login.username!r}"

    # ---- requests -----------------------------------------------------------------------------------------

    def url(self, repository: str, *rest: str) -> URL:
        return self.base.with_path(f"/v2/{repository}/{'/'.join(rest)}", encoded=False)

    async def _request(
        self,
        method: str,
        url: URL,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request whose body can be sent again (bytes or none), answering one auth challenge on the way.
        The caller releases the response."""
        for _ in range(2):
            sent = self._authorization(scope)
            try:
                resp = await self.http.request(
                    method, url, headers={**(headers or {}), **sent}, data=data, allow_redirects=False
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise RegistryError(f"{what}: cannot reach {self.host} ({type(e).__name__}: {e})", True) from e
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            body = await resp.read()
            resp.release()
            if not challenge:
                raise from_response(401, body, what)
            if self._authorization(scope) in ({}, sent):
                await self._answer(challenge, scope, what)
            # else: a request running beside this one met the challenge meanwhile; send again with what it got
        raise RegistryDenied(self._refused(what))

    async def _fail(self, resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        body = await resp.read()
        resp.release()
        return from_response(resp.status, body, what)

    # ---- manifests ----------------------------------------------------------------------------------------

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        what = f"manifest {self.host}/{repository}:{reference}"
        url = self.url(repository, "manifests", reference)
        resp = await self._request("GET", url, pull_scope(repository), what, {"Accept": ACCEPT})
        if resp.status != 200:
            error = await self._fail(resp, what)
            if isinstance(error, RegistryNotFound) and not await self._repository_exists(repository):
                raise RegistryNotFound(f"{self.host}/{repository}: no such repository in the registry")
            raise error
        body = b""
        try:
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > MAX_MANIFEST:
                    break
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"{what}: the download broke off ({type(e).__name__})", True) from e
        finally:
            resp.release()
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"{what}: larger than {MAX_MANIFEST} bytes")
        digest = digest_of(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: the registry sent a manifest whose digest is {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(body, media_type, digest)

    async def _repository_exists(self, repository: str) -> bool:
        """Whether the registry knows the repository: its tag list answers (a missing one is NAME_UNKNOWN). Some
        registries answer a missing manifest the same either way; this tells the two apart for the message."""
        url = self.url(repository, "tags", "list").with_query({"n": "1"})
        resp = await self._request("GET", url, pull_scope(repository), f"tags of {self.host}/{repository}")
        resp.release()
        return resp.status != 404

    async def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        what = f"manifest {self.host}/{repository}:{tag}"
        url = self.url(repository, "manifests", tag)
        resp = await self._request("PUT", url, push_scope(repository), what, {"Content-Type": media_type}, body)
        if resp.status not in (200, 201):
            raise await self._fail(resp, what)
        resp.release()
        digest = digest_of(body)
        said = resp.headers.get("Docker-Content-Digest", digest)
        if said != digest:
            raise RegistryError(f"{what}: the registry stored the manifest as {said}, not {digest}")
        return digest

    # ---- blobs --------------------------------------------------------------------------------------------

    async def has_blob(self, repository: str, digest: str, scope: str = "") -> bool:
        what = f"blob {digest} in {self.host}/{repository}"
        resp = await self._request("HEAD", self.url(repository, "blobs", digest), scope or pull_scope(repository), what)
        resp.release()
        if resp.status in (200, 307, 302):
            return True
        if resp.status == 404:
            return False
        raise from_response(resp.status, b"", what)

    async def read_blob(self, repository: str, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """The blob's bytes from `offset` on, following the registry's redirect (to its storage) if it sends one;
        the login goes to the registry only."""
        what = f"blob {digest} of {self.host}/{repository}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        url = self.url(repository, "blobs", digest)
        resp = await self._request("GET", url, pull_scope(repository), what, headers)
        for _ in range(MAX_REDIRECTS):
            if resp.status not in _REDIRECTS:
                break
            target = url.join(URL(resp.headers.get("Location", "")))
            resp.release()
            if target.scheme not in ("http", "https") or (url.scheme == "https" and target.scheme != "https"):
                raise RegistryError(f"{what}: refused a redirect from {url.scheme} to {target.scheme or 'nothing'}")
            same = target.origin() == self.base.origin()
            sent = {**headers, **self._authorization(pull_scope(repository))} if same else headers
            try:
                resp = await self.http.get(target, headers=sent, allow_redirects=False)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise RegistryError(f"{what}: cannot reach {target.host} ({type(e).__name__})", True) from e
            url = target
        if resp.status not in (200, 206):
            raise await self._fail(resp, what)
        try:
            async for chunk in skipping(resp.content.iter_chunked(1 << 20), offset if resp.status == 200 else 0):
                yield chunk
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"{what}: the download broke off ({type(e).__name__})", True) from e
        finally:
            resp.release()

    async def push_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read: Reader,
        sent: Callable[[int], None],
        mount_from: str = "",
    ) -> bool:
        """Put a blob into `repository` unless it is there; True when its bytes were sent. `sent(n)` is told of
        each span the registry accepted. With `mount_from` (another repository of this registry holding it), the
        registry is asked to link it from there first."""
        scope = push_scope(repository)
        if await self.has_blob(repository, digest, scope):
            return False
        what = f"blob {digest} to {self.host}/{repository}"
        uploads = self.url(repository, "blobs", "uploads", "")
        blob = _Blob(uploads, digest, size, read, sent, scope, what)
        if mount_from:
            mounting = uploads.update_query({"mount": digest, "from": mount_from})
            location, minimum = await self._begin(blob, mounting, f"{scope} {pull_scope(mount_from)}")
        else:
            location, minimum = await self._begin(blob)
        if location is None:  # mounted: nothing to send
            return False
        return await self._upload(blob, location, max(self.chunk_size, minimum))

    async def _begin(self, blob: _Blob, url: URL | None = None, scope: str = "") -> tuple[URL | None, int]:
        """Start an upload (POST to the repository's uploads, or to `url` asking for a mount): where to send the
        bytes (None when the registry mounted the blob instead) and the smallest chunk it takes (0: any)."""
        resp = await self._request("POST", url or blob.uploads, scope or blob.scope, blob.what)
        if resp.status == 201:
            resp.release()
            return None, 0
        if resp.status != 202:
            raise await self._fail(resp, blob.what)
        resp.release()
        # A registry may ask for chunks of at least some size (distribution spec 1.1); smaller ones it would refuse.
        minimum = resp.headers.get("OCI-Chunk-Min-Length", "")
        return self._location(resp, blob.uploads), int(minimum) if minimum.isdigit() else 0

    async def _restart(self, blob: _Blob) -> URL:
        location, _ = await self._begin(blob)
        if location is None:
            raise RegistryError(f"{blob.what}: the registry answered a new upload with 201 and no location")
        return location

    async def _upload(self, blob: _Blob, location: URL, chunk: int) -> bool:
        if blob.size <= chunk:
            return await self._whole(blob, location)
        offset = 0
        failures = 0
        resumed = False  # the last chunk went on from where the registry said it stood
        while offset < blob.size:
            length = min(chunk, blob.size - offset)
            try:
                body = blob.read(offset, length)
                location = await self._patch(location, offset, length, body, blob.scope, blob.what)
            except RegistryError as e:
                if offset == 0 and e.status in _NO_CHUNKS:
                    # The registry takes no chunked uploads: the whole blob in one streamed PUT instead.
                    log.info("%s: the registry refused a chunk (%s); sending the blob whole", blob.what, e)
                    return await self._whole(blob, await self._restart(blob))
                failures += 1
                if failures > CHUNK_RETRIES or not (e.transient or resumed):
                    raise
                held = 0
                if not resumed:
                    await asyncio.sleep(RESUME_PAUSE)  # let the registry finish with the request that broke
                    try:
                        held, location = await self._held(location, blob.scope, blob.what)
                        resumed = True
                    except RegistryError:
                        pass
                if not held:
                    # The registry dropped the upload, or would not take it on from where it said: start over.
                    location, resumed = await self._restart(blob), False
                log.info("%s: chunk at %d failed (%s); going on at %d", blob.what, offset, e, held)
                blob.sent(held - offset)
                offset = held
                continue
            resumed = False
            blob.sent(length)
            offset += length
        await self._put(location, blob.digest, 0, None, blob.scope, blob.what)
        return True

    async def _whole(self, blob: _Blob, location: URL) -> bool:
        await self._put(location, blob.digest, blob.size, blob.read(0, blob.size), blob.scope, blob.what)
        blob.sent(blob.size)
        return True

    def _location(self, resp: aiohttp.ClientResponse, base: URL) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host} answered an upload without a Location")
        target = base.join(URL(location))
        if target.origin() != self.base.origin():
            raise RegistryError(f"{self.host} sent an upload location on another host ({target.host})")
        return target

    async def _put(
        self, location: URL, digest: str, size: int, body: AsyncIterator[bytes] | None, scope: str, what: str
    ) -> None:
        url = location.update_query({"digest": digest})
        headers = {**self._authorization(scope), "Content-Type": "application/octet-stream"}
        headers["Content-Length"] = str(size)
        try:
            async with self.http.put(url, data=body if body is not None else b"", headers=headers) as resp:
                if resp.status not in (201, 204):
                    raise from_response(resp.status, await resp.read(), what)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"{what}: the upload broke off ({type(e).__name__}: {e})", True) from e

    async def _patch(
        self, location: URL, offset: int, length: int, body: AsyncIterator[bytes], scope: str, what: str
    ) -> URL:
        headers = {
            **self._authorization(scope),
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + length - 1}",
            "Content-Length": str(length),
        }
        try:
            async with self.http.patch(location, data=body, headers=headers) as resp:
                if resp.status != 202:
                    raise from_response(resp.status, await resp.read(), what)
                return self._location(resp, location)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"{what}: the upload broke off ({type(e).__name__}: {e})", True) from e

    async def _held(self, location: URL, scope: str, what: str) -> tuple[int, URL]:
        """How many bytes of an upload the registry holds (its `Range: 0-<last>`), and the location to go on at."""
        resp = await self._request("GET", location, scope, what)
        try:
            if resp.status != 204:
                raise from_response(resp.status, await resp.read(), f"{what}: upload status")
            last = resp.headers.get("Range", "0--1").rpartition("-")[2]
            return int(last) + 1, self._location(resp, location)
        except ValueError as e:
            raise RegistryError(f"{what}: the registry's upload status has no readable Range") from e
        finally:
            resp.release()
