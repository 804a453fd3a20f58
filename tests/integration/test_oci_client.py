"""The registry client against a stock registry (CNCF distribution): uploads in one PUT and in chunks, a chunk cut
short and resumed, blobs not sent twice, cross-repository mounts, the Basic and Bearer auth dances, and the
refusals a user reads (no credentials, wrong ones, a missing repository, an unknown tag)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import oras.provider
import pytest
from aiohttp.test_utils import TestServer

from model_manager.core.push import ModelFacts
from model_manager.oci import modelpack
from model_manager.oci.auth import Login
from model_manager.oci.client import OCI_MANIFEST, Registry
from model_manager.oci.errors import RegistryDenied, RegistryError, RegistryNotFound
from tests.fakes.oci_proxy import Front
from tests.fakes.oci_registry import PASSWORD, USER

CHUNK = 1 << 20


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _reader(data: bytes, calls: list[tuple[int, int]] | None = None) -> Callable[[int, int], AsyncIterator[bytes]]:
    async def read(offset: int, length: int) -> AsyncIterator[bytes]:
        if calls is not None:
            calls.append((offset, length))
        for start in range(offset, offset + length, 64 * 1024):
            yield data[start : min(start + 64 * 1024, offset + length)]

    return read


def _repo() -> str:
    return f"models/m{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _read_by_title(
    http: aiohttp.ClientSession, host: str, repo: str, digest: str, authorization: str
) -> dict[str, bytes]:
    accept = {"Accept": OCI_MANIFEST, "Authorization": authorization}
    async with http.get(f"http://{host}/v2/{repo}/manifests/{digest}", headers=accept) as resp:
        manifest = await resp.json(content_type=None)
    assert manifest["artifactType"] == modelpack.ARTIFACT_TYPE
    files = {}
    for layer in manifest["layers"]:
        async with http.get(f"http://{host}/v2/{repo}/blobs/{layer['digest']}", headers=accept) as resp:
            files[layer["annotations"][modelpack.TITLE]] = await resp.read()
    return files


async def _push_model(registry: Registry, repo: str, files: dict[str, bytes], tag: str = "v1") -> str:
    layers = []
    for path, data in files.items():
        await registry.push_blob(repo, _digest(data), len(data), _reader(data), lambda n: None)
        layers.append(modelpack.Layer(path, len(data), _digest(data)))
    config = modelpack.config_blob(ModelFacts(name=repo), layers)
    await registry.push_blob(repo, _digest(config), len(config), _reader(config), lambda n: None)
    body = modelpack.manifest(config, _digest(config), layers, {})
    return await registry.put_manifest(repo, tag, body, OCI_MANIFEST)


@pytest.mark.parametrize("auth", ["", "basic", "token"])
async def test_a_pushed_artifact_reads_back_through_oras_byte_exact(
    auth: str, http: aiohttp.ClientSession, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    reg: Any = request.getfixturevalue(f"oci_registry{'_' + auth if auth else ''}")
    registry = Registry(http, reg.host, Login(USER, PASSWORD) if auth else None, insecure=True, chunk_size=CHUNK)
    files = {
        "config.json": b'{"architectures": ["BertModel"]}',
        "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
        "model.safetensors": bytes(range(256)) * (14 * 1024),  # 3.5 MiB: four PATCHes
    }
    repo = _repo()
    digest = await _push_model(registry, repo, files)

    if auth == "basic":
        # oras-py answers a Basic challenge by asking its realm for a token (it has no Basic flow): read this
        # registry over plain HTTP with the login instead, by each layer's title, as oras would.
        pulled = await _read_by_title(http, reg.host, repo, digest, Login(USER, PASSWORD).basic())
    else:
        client = oras.provider.Registry(insecure=True)
        manifest = await asyncio.to_thread(client.get_manifest, f"{reg.host}/{repo}:v1")
        assert manifest["artifactType"] == modelpack.ARTIFACT_TYPE
        assert manifest["config"]["mediaType"] == modelpack.CONFIG_TYPE
        out = tmp_path / "pulled"
        await asyncio.to_thread(client.pull, target=f"{reg.host}/{repo}@{digest}", outdir=str(out))
        pulled = {path: (out / path).read_bytes() for path in files}
    assert pulled == files
    if auth == "token":
        assert f"repository:{repo}:pull,push" in reg.token_requests


async def test_a_blob_the_registry_has_is_not_sent_again_and_mounts_across_repositories(
    oci_registry: Any, http: aiohttp.ClientSession
) -> None:
    registry = Registry(http, oci_registry.host, insecure=True, chunk_size=CHUNK)
    data = b"weights" * 1000
    calls: list[tuple[int, int]] = []
    first, second = _repo(), _repo()
    assert await registry.push_blob(first, _digest(data), len(data), _reader(data, calls), lambda n: None)
    assert not await registry.push_blob(first, _digest(data), len(data), _reader(data, calls), lambda n: None)
    assert len(calls) == 1
    mounted = await registry.push_blob(second, _digest(data), len(data), _reader(data, calls), lambda n: None, first)
    assert not mounted and len(calls) == 1  # linked by the registry, not uploaded
    assert await registry.has_blob(second, _digest(data))


async def test_a_chunk_cut_short_goes_on_and_the_blob_arrives_whole(
    oci_registry: Any, http: aiohttp.ClientSession
) -> None:
    """The client asks the registry how much it holds and goes on from there; distribution pins an upload's
    offset in its signed state, so after a broken PATCH it refuses that and the blob's upload starts over. Either
    way the registry checks the digest of what it got, and progress counts every byte once."""
    registry = Registry(http, oci_registry.host, insecure=True, chunk_size=CHUNK)
    data = hashlib.sha256(b"seed").digest() * (CHUNK * 3 // 32 + 100)
    calls: list[tuple[int, int]] = []
    broken = {"left": 1}

    async def read(offset: int, length: int) -> AsyncIterator[bytes]:
        calls.append((offset, length))
        if offset == CHUNK and broken["left"]:
            broken["left"] -= 1
            yield data[offset : offset + 1000]
            raise ConnectionResetError("the store went away")
        yield data[offset : offset + length]

    accepted: list[int] = []
    assert await registry.push_blob(_repo(), _digest(data), len(data), read, accepted.append)
    assert sum(accepted) == len(data)  # every byte counted once, whatever was resent
    assert calls[:2] == [(0, CHUNK), (CHUNK, CHUNK)] and len(calls) > 4  # the broken chunk was sent again
    assert calls[-1] == (3 * CHUNK, len(data) - 3 * CHUNK)


async def test_credentials_missing_or_wrong_are_refused_with_a_clear_message(
    oci_registry_basic: Any, oci_registry_token: Any, http: aiohttp.ClientSession
) -> None:
    data = b"x" * 10
    anonymous = Registry(http, oci_registry_basic.host, insecure=True)
    with pytest.raises(RegistryDenied, match="none are configured"):
        await anonymous.push_blob(_repo(), _digest(data), len(data), _reader(data), lambda n: None)
    wrong = Registry(http, oci_registry_basic.host, Login(USER, "wrong"), insecure=True)
    with pytest.raises(RegistryDenied, match=f"refused the credentials of '{USER}'"):
        await wrong.get_manifest(_repo(), "v1")
    # The token service grants an anonymous caller pull only: the registry then refuses the push.
    reader_only = Registry(http, oci_registry_token.host, insecure=True)
    with pytest.raises(RegistryDenied):
        await reader_only.push_blob(_repo(), _digest(data), len(data), _reader(data), lambda n: None)


async def test_a_missing_repository_and_an_unknown_tag_say_which(
    oci_registry: Any, http: aiohttp.ClientSession
) -> None:
    registry = Registry(http, oci_registry.host, insecure=True)
    repo = _repo()
    with pytest.raises(RegistryNotFound, match="no such repository"):
        await registry.get_manifest(repo, "v1")
    await _push_model(registry, repo, {"a.txt": b"a"})
    with pytest.raises(RegistryNotFound, match="no such tag"):
        await registry.get_manifest(repo, "v2")


async def test_tls_is_the_default(oci_registry: Any, http: aiohttp.ClientSession) -> None:
    """A registry not listed as insecure is spoken to over TLS: a plain-HTTP one fails the handshake, and the
    error says the registry could not be reached rather than sending anything in the clear."""
    registry = Registry(http, oci_registry.host)
    assert registry.base.scheme == "https"
    with pytest.raises(RegistryError, match="cannot reach") as caught:
        await registry.get_manifest(_repo(), "v1")
    assert caught.value.transient


@pytest.mark.parametrize("refuse_chunks", [True, False])
async def test_uploads_go_as_the_registry_allows(
    refuse_chunks: bool, oci_registry: Any, http: aiohttp.ClientSession
) -> None:
    """A registry that refuses chunks gets the blob whole in one streamed PUT; one that asks for chunks of at
    least 2 MiB gets chunks of 2 MiB, though the client was set to 1 MiB."""
    front = Front(oci_registry.host, refuse_chunks=refuse_chunks, min_chunk=0 if refuse_chunks else 2 * CHUNK)
    server = TestServer(front.app(), host="127.0.0.1")
    await server.start_server()
    try:
        registry = Registry(http, f"127.0.0.1:{server.port}", insecure=True, chunk_size=CHUNK)
        data = hashlib.sha256(b"whole").digest() * (5 * CHUNK // 32)  # 5 MiB
        accepted: list[int] = []
        assert await registry.push_blob(_repo(), _digest(data), len(data), _reader(data), accepted.append)
        assert sum(accepted) == len(data)
        patches = [n for method, _, n in front.seen if method == "PATCH"]
        puts = [n for method, _, n in front.seen if method == "PUT"]
        if refuse_chunks:
            assert len(patches) == 1 and puts == [len(data)]  # one refused chunk, then the whole blob
        else:
            assert patches == [2 * CHUNK, 2 * CHUNK, CHUNK] and puts == [0]
    finally:
        await server.close()
