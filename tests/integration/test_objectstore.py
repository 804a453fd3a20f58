"""Both object-store backends behind one interface: local directory and S3 (moto's server)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_manager.config import ObjectStoreConfig, S3Config
from model_manager.errors import FailedPrecondition
from model_manager.objectstore.base import ObjectStore, StoreError
from model_manager.objectstore.factory import open_store
from model_manager.objectstore.local import LocalStore
from model_manager.objectstore.s3 import S3Store
from tests.objects import get, put


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        s = open_store(ObjectStoreConfig(local_path=str(tmp_path / "objects")))
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        s = open_store(ObjectStoreConfig(s3=S3Config(endpoint_url=endpoint, region="us-east-1", bucket=bucket)))
    yield s
    await s.close()


async def test_put_get_list_and_delete_model_files(store: ObjectStore) -> None:
    await put(store, "models/base-models/org/a/config.json", b"{}")
    await put(store, "models/base-models/org/a/sub/w.bin", b"123")
    await put(store, "models/base-models/org/ab/config.json", b"keep")
    await put(store, "models/base-models/org/a.gguf", b"file")
    assert await get(store, "models/base-models/org/a/sub/w.bin") == b"123"
    listed = await store.list_objects("models/base-models/org/a/")
    assert [(o.key, o.size) for o in listed] == [
        ("models/base-models/org/a/config.json", 2),
        ("models/base-models/org/a/sub/w.bin", 3),
    ]
    assert await store.delete_model_files("models/base-models/org/a") == 2
    assert await store.delete_model_files("models/base-models/org/a.gguf") == 1
    remaining = [o.key for o in await store.list_objects("models/")]
    assert remaining == ["models/base-models/org/ab/config.json"]


async def test_keys_cannot_escape_the_store(store: ObjectStore) -> None:
    for key in ["../x", "/abs", "a/../../b", "", "/etc/passwd", "a\\..\\b", "a\x00b", "blobs/sha256-../../x", "a//b"]:
        with pytest.raises(StoreError, match="invalid object key"):
            await put(store, key, b"x")
    assert await store.list_objects("") == []  # nothing was written anywhere


async def test_s3_without_bucket_says_so() -> None:
    s = open_store(ObjectStoreConfig(s3=S3Config(path_prefix="models")))
    with pytest.raises(FailedPrecondition, match=r"objectStore\.s3\.bucket is not configured"):
        await s.list_objects("models/")


async def test_s3_errors_come_out_as_store_errors_with_their_code(s3_endpoint: str) -> None:
    store = S3Store(S3Config(endpoint_url=s3_endpoint, region="us-east-1", bucket="no-such-bucket-here"))
    try:
        with pytest.raises(StoreError) as raised:
            await store.list_objects("models/")
        assert raised.value.code == "NoSuchBucket" and not raised.value.transient
        with pytest.raises(StoreError, match="NoSuchBucket"):
            await put(store, "models/x", b"x")
        assert store.budget.in_use == 0
    finally:
        await store.close()


async def test_local_files_are_readable_by_the_group(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    await put(store, "models/base-models/org/a/model.gguf", b"x")
    mode = (tmp_path / "objects" / "models/base-models/org/a/model.gguf").stat().st_mode
    assert mode & stat.S_IRGRP, oct(mode)


async def test_leftovers_of_a_killed_write_are_removed_by_the_next_write_and_by_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    model = tmp_path / "objects" / "models/base-models/org/a"
    model.mkdir(parents=True)
    (model / ".w.bin.k1ll3d.part").write_bytes(b"half")  # what a loader killed mid-write leaves
    (model / ".other.bin.k1ll3d.part").write_bytes(b"half")
    await put(store, "models/base-models/org/a/w.bin", b"whole")
    assert not (model / ".w.bin.k1ll3d.part").exists()
    assert [o.key for o in await store.list_objects("models/")] == ["models/base-models/org/a/w.bin"]
    assert await store.delete_model_files("models/base-models/org/a") == 2
    assert not (tmp_path / "objects" / "models").exists()


async def test_a_key_that_cannot_be_deleted_does_not_keep_the_others(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    await put(store, "m/a", b"1")
    await put(store, "m/c", b"3")
    (tmp_path / "objects" / "m" / "b" / "inner").mkdir(parents=True)  # a directory where a file is expected
    with pytest.raises(StoreError, match="cannot delete m/b") as raised:
        await store.delete_keys(["m/a", "m/b", "m/c"])
    assert "1 of 3 failed" in str(raised.value) and str(tmp_path) not in str(raised.value)
    assert [o.key for o in await store.list_objects("m/")] == []
