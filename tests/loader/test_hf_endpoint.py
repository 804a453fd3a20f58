"""Stored models served over the Hugging Face protocol (`/hf` on the REST port), driven by the real huggingface_hub
client: a model loaded by the real loader from the hub stand-in, downloaded back byte for byte from a local
directory and from S3 (moto), with resumes, keys, walls between tenants, and presigned redirects."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from model_manager.api.rest import RestApi
from model_manager.config import HttpConfig
from model_manager.core.identity import Role
from model_manager.objectstore.base import StoreError
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.aliases import AliasService
from model_manager.service.auth import Authenticator
from model_manager.service.health import Health
from model_manager.service.keys import KeyScope, KeyService
from model_manager.service.models import ModelsService
from tests.fakes.hub import DEFAULT_COMMIT
from tests.helpers import HF, OTHER_PROJECT, WHO, Api
from tests.loader.conftest import Harness, base_path, minilm_files

REPO = "sentence-transformers/all-MiniLM-L6-v2"
FILES = minilm_files()


@dataclass
class Served:
    url: str  # the endpoint: HF_ENDPOINT
    reader: str  # a reader key of the default tenant: HF_TOKEN
    other_tenant: str  # a reader key of another tenant
    ranges: list[str]  # the Range header of every file request the server saw


@asynccontextmanager
async def _serve(harness: Harness, http: HttpConfig | None = None) -> AsyncIterator[Served]:
    ctx = replace(harness.ctx, objects=harness.store)
    keys = KeyService(ctx.db)
    reader, _ = await keys.create(KeyScope(WHO.tenant_id, Role.READER, WHO.organization_id, WHO.project_id))
    other, _ = await keys.create(KeyScope("other-tenant", Role.READER, "o", "p"))
    auth = Authenticator(ctx.db, enabled=True)
    app = RestApi(ModelsService(ctx), Health(ctx).ready, auth, http).app()
    ranges: list[str] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        if "/resolve/" in request.path:
            ranges.append(request.headers.get("Range", ""))

    app.on_response_prepare.append(record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Served(f"http://127.0.0.1:{server.port}/hf", reader, other, ranges)
    finally:
        await server.close()


@pytest.fixture
async def loaded(any_harness: Harness, api: Api) -> Harness:
    any_harness.hub.add(REPO, FILES)
    await api.request_base(REPO)
    await any_harness.drain()
    return any_harness


@pytest.fixture
async def served(loaded: Harness) -> AsyncIterator[Served]:
    async with _serve(loaded) as s:
        yield s


def _in_thread(call: Any, *args: Any, **kw: Any) -> Any:
    return asyncio.to_thread(call, *args, **kw)


def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _files(folder: str | Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path (huggingface_hub's own .cache excluded)."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


async def test_a_snapshot_is_the_stored_files_byte_for_byte(served: Served, tmp_path: Path) -> None:
    folder = await _in_thread(
        snapshot_download, REPO, endpoint=served.url, token=served.reader, cache_dir=tmp_path / "cache"
    )
    assert _files(folder) == FILES
    assert Path(folder).name == DEFAULT_COMMIT  # the commit the loader stored
    # The stored id names the same repo, and one file comes alone.
    one = await _in_thread(
        hf_hub_download,
        "sentence-transformers-all-MiniLM-L6-v2",
        "1_Pooling/config.json",
        endpoint=served.url,
        token=served.reader,
        cache_dir=tmp_path / "other",
    )
    assert _read(one) == FILES["1_Pooling/config.json"]


async def test_model_info_and_the_tree_say_what_is_stored(served: Served) -> None:
    api = HfApi(endpoint=served.url, token=served.reader)
    info = await _in_thread(api.model_info, REPO, files_metadata=True)
    assert info.sha == DEFAULT_COMMIT
    siblings = {s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
    assert siblings == {p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in FILES.items()}
    pinned = await _in_thread(api.model_info, REPO, revision=DEFAULT_COMMIT)
    assert pinned.sha == DEFAULT_COMMIT
    tree = await _in_thread(lambda: list(api.list_repo_tree(REPO, recursive=True)))
    assert {e.path for e in tree} == set(FILES) | {"1_Pooling"}
    top = await _in_thread(lambda: list(api.list_repo_tree(REPO)))
    assert "1_Pooling/config.json" not in {e.path for e in top} and "1_Pooling" in {e.path for e in top}
    below = await _in_thread(lambda: list(api.list_repo_tree(REPO, path_in_repo="1_Pooling")))
    assert [e.path for e in below] == ["1_Pooling/config.json"]
    assert await _in_thread(api.list_repo_files, REPO) == sorted(FILES)


async def test_a_download_cut_midway_resumes_with_a_range_request(
    served: Served, loaded: Harness, tmp_path: Path
) -> None:
    weights = FILES["model.safetensors"]
    cut = len(weights) // 3
    read = loaded.store.read
    cuts: list[int] = []

    async def cut_once(key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        # The store fails once, a third into the weights, after the server has sent its headers.
        sent = offset
        async for chunk in read(key, offset, length):
            if key.endswith("model.safetensors") and not cuts and sent + len(chunk) > cut:
                cuts.append(sent)
                raise StoreError("the store went away", "EIO", transient=True)
            sent += len(chunk)
            yield chunk

    loaded.store.read = cut_once  # type: ignore[method-assign]
    path = await _in_thread(
        hf_hub_download, REPO, "model.safetensors", endpoint=served.url, token=served.reader, cache_dir=tmp_path
    )
    assert _read(path) == weights
    # huggingface_hub asked for the rest only: from the last whole chunk it had written before the cut.
    resumed = served.ranges[-1]
    assert cuts and resumed.startswith("bytes=") and 0 < int(resumed[6:-1]) <= cuts[0], (resumed, cuts)

    def fetch(range_: str) -> tuple[int, bytes, str]:
        request = urllib.request.Request(
            f"{served.url}/{REPO}/resolve/main/model.safetensors",
            headers={"Authorization": f"Bearer {served.reader}", "Range": range_},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read(), r.headers.get("Content-Range", "")
        except urllib.error.HTTPError as e:
            return e.code, b"", e.headers.get("Content-Range", "")

    assert await _in_thread(fetch, "bytes=100-199") == (206, weights[100:200], f"bytes 100-199/{len(weights)}")
    assert await _in_thread(fetch, "bytes=-10") == (
        206,
        weights[-10:],
        f"bytes {len(weights) - 10}-{len(weights) - 1}/{len(weights)}",
    )
    assert await _in_thread(fetch, f"bytes={len(weights)}-") == (416, b"", f"bytes */{len(weights)}")


async def test_keys_and_walls(served: Served, api: Api, loaded: Harness, tmp_path: Path) -> None:
    def info(token: str | None, repo: str = REPO, revision: str | None = None) -> Any:
        return HfApi(endpoint=served.url, token=token).model_info(repo, revision=revision)

    # Another tenant's model is not found, exactly as a missing one.
    with pytest.raises(RepositoryNotFoundError):
        await _in_thread(info, served.other_tenant)
    with pytest.raises(RepositoryNotFoundError):
        await _in_thread(info, served.reader, "org/none")
    with pytest.raises(RevisionNotFoundError):
        await _in_thread(info, served.reader, REPO, "v2")
    with pytest.raises(EntryNotFoundError):
        await _in_thread(
            hf_hub_download, REPO, "missing.bin", endpoint=served.url, token=served.reader, cache_dir=tmp_path
        )
    # No key: 401.
    with pytest.raises(HfHubHTTPError) as refused:
        await _in_thread(info, False)
    assert refused.value.response is not None and refused.value.response.status_code == 401
    # Another project's model: not found for this project's key, found with its own.
    loaded.hub.add("org/theirs", {"config.json": b"{}", "model.safetensors": b"t" * 100})
    await api.request_base("org/theirs", who=OTHER_PROJECT, is_project_scoped=True)
    await loaded.drain()
    with pytest.raises(RepositoryNotFoundError):
        await _in_thread(info, served.reader, "org/theirs")
    scope = KeyScope(OTHER_PROJECT.tenant_id, Role.READER, OTHER_PROJECT.organization_id, OTHER_PROJECT.project_id)
    theirs, _ = await KeyService(loaded.ctx.db).create(scope)
    assert (await _in_thread(info, theirs, "org/theirs")).sha == DEFAULT_COMMIT
    # A model that is not loaded (requested, loading or failed) is not served.
    loaded.hub.add("org/waiting", {"config.json": b"{}"})
    await api.request_base("org/waiting", HF)
    with pytest.raises(RepositoryNotFoundError):
        await _in_thread(info, served.reader, "org/waiting")


async def test_fine_tuned_models_have_a_repo_id_of_their_own(harness: Harness, api: Api, tmp_path: Path) -> None:
    adapter = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"a" * 4096}
    harness.hub.add("org/my-adapter", adapter)
    await api.loaded_base("base")
    created = await api.fine_tuned("base", "tuned", source=HF, location="org/my-adapter")
    await harness.drain()
    async with _serve(harness) as served:
        repo_id = created.id.replace(":", "__")
        folder = await _in_thread(
            snapshot_download, repo_id, endpoint=served.url, token=served.reader, cache_dir=tmp_path
        )
        assert _files(folder) == adapter


async def test_s3_stores_can_redirect_to_presigned_urls(s3_harness: Harness, api: Api, tmp_path: Path) -> None:
    s3_harness.hub.add(REPO, FILES)
    await api.request_base(REPO)
    await s3_harness.drain()
    async with _serve(s3_harness, HttpConfig(hf_redirect=True, hf_redirect_expiry=60.0)) as served:
        path = await _in_thread(
            hf_hub_download, REPO, "model.safetensors", endpoint=served.url, token=served.reader, cache_dir=tmp_path
        )
        assert _read(path) == FILES["model.safetensors"]

        def head() -> tuple[int, str]:
            request = urllib.request.Request(
                f"{served.url}/{REPO}/resolve/main/config.json",
                method="HEAD",
                headers={"Authorization": f"Bearer {served.reader}"},
            )

            class Keep(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *args: Any, **kw: Any) -> None:
                    return None

            try:
                urllib.request.build_opener(Keep).open(request, timeout=30)
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("Location", "")
            return 200, ""

        status, location = await _in_thread(head)
        endpoint = s3_harness.raw["objectStore"]["s3"]["endpointUrl"]
        assert status == 302 and location.startswith(endpoint) and "Signature" in location


async def test_a_store_that_fails_before_the_first_byte_is_a_503_and_a_missing_object_a_404(
    served: Served, loaded: Harness, api: Api
) -> None:
    def get(name: str) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{served.url}/{REPO}/resolve/main/{name}", headers={"Authorization": f"Bearer {served.reader}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, ""
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("X-Error-Code", "") or e.read().decode()

    path = await base_path(api, "sentence-transformers-all-MiniLM-L6-v2")
    await loaded.store.delete_keys([f"{path}/vocab.txt"])
    assert await _in_thread(get, "vocab.txt") == (404, "EntryNotFound")
    read = loaded.store.read

    async def down(key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        raise StoreError("connection refused", "ConnectionRefusedError", transient=True)
        yield b""  # an async generator, as the store's own read is

    loaded.store.read = down  # type: ignore[method-assign]
    status, body = await _in_thread(get, "config.json")
    assert status == 503 and "the object store cannot be read right now" in body
    loaded.store.read = read  # type: ignore[method-assign]
    assert (await _in_thread(get, "config.json"))[0] == 200


async def test_an_alias_is_a_repo_id_too(served: Served, api: Api) -> None:
    await AliasService(api.ctx).set_alias(
        WHO, pb.SetAliasRequest(name="embedder", model_id="sentence-transformers-all-MiniLM-L6-v2")
    )
    info = await _in_thread(HfApi(endpoint=served.url, token=served.reader).model_info, "embedder")
    assert info.sha == DEFAULT_COMMIT
