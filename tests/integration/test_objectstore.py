"""Both object-store backends behind one interface: local directory and S3 (moto's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_manager.config import ObjectStoreConfig, S3Config
from model_manager.errors import FailedPrecondition, InvalidArgument
from model_manager.objectstore.base import ObjectStore
from model_manager.objectstore.factory import open_store


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
    await store.put_bytes("models/base-models/org/a/config.json", b"{}")
    await store.put_bytes("models/base-models/org/a/sub/w.bin", b"123")
    await store.put_bytes("models/base-models/org/ab/config.json", b"keep")
    await store.put_bytes("models/base-models/org/a.gguf", b"file")
    assert await store.get_bytes("models/base-models/org/a/sub/w.bin") == b"123"
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
    for key in ["../x", "/abs", "a/../../b", ""]:
        with pytest.raises(InvalidArgument):
            await store.put_bytes(key, b"x")


async def test_s3_without_bucket_says_so() -> None:
    s = open_store(ObjectStoreConfig(s3=S3Config(path_prefix="models")))
    with pytest.raises(FailedPrecondition, match=r"objectStore\.s3\.bucket is not configured"):
        await s.list_objects("models/")
