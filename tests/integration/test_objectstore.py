"""Both object-store backends behind one interface: local directory and S3 (moto's server)."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gguf
import pytest

from model_manager.config import ObjectStoreConfig, S3Config
from model_manager.core.errors import FailedPrecondition
from model_manager.core.files import StoredFile
from model_manager.loader.convert.run import Conversion
from model_manager.loader.errors import TransientError
from model_manager.objectstore import streams
from model_manager.objectstore.base import ObjectStore, StoreError
from model_manager.objectstore.factory import open_store
from model_manager.objectstore.local import LocalStore
from model_manager.objectstore.s3 import S3Store
from tests.checkpoints import Checkpoint
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


async def test_a_sent_part_is_freed_while_the_rest_of_the_file_uploads(s3_endpoint: str, s3_bucket: str) -> None:
    """Memory stays within partsInFlight x partSize: once a part is sent, nothing keeps its buffer, the first part
    (read before the upload knew it was multipart) included."""
    part = 5 * 1024 * 1024
    store = S3Store(
        S3Config(endpoint_url=s3_endpoint, region="us-east-1", bucket=s3_bucket, part_size_mib=5, parts_in_flight=2)
    )
    chunk = b"x" * (1024 * 1024)
    alive_at_end: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for _ in range(4 * 5 - 1):
            yield chunk
        # Every earlier part has been sent when only the part being read holds a slot.
        while store.budget.in_use > 1:  # noqa: ASYNC110 - polling the store's own counter, no event to wait on
            await asyncio.sleep(0.01)
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, streams.__file__)])
        alive_at_end.append(sum(s.size for s in snapshot.statistics("filename")))
        yield chunk

    tracemalloc.start()
    try:
        await store.upload("models/big.bin", source())
    finally:
        tracemalloc.stop()
        await store.close()
    # The part being read (the last one) and nothing else.
    assert alive_at_end and alive_at_end[0] < 1.5 * part, alive_at_end
    assert [(o.key, o.size) for o in await store.list_objects("models/")] == [("models/big.bin", 4 * part)]


async def test_part_bodies_are_not_hashed_for_signing_but_carry_a_content_md5(s3_endpoint: str, s3_bucket: str) -> None:
    """Signing would sha256 every part on the event loop; the parts go out unsigned-payload with a Content-MD5
    (hashed in a thread), which the signature covers and the server checks."""
    store = S3Store(S3Config(endpoint_url=s3_endpoint, region="us-east-1", bucket=s3_bucket, part_size_mib=5))
    sent: list[dict[str, str]] = []
    client = await store.client()

    def record(request: Any, **_: Any) -> None:
        sent.append({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.UploadPart", record)
    client.meta.events.register("before-send.s3.PutObject", record)
    try:
        await put(store, "models/big.bin", b"y" * (6 * 1024 * 1024))
        await put(store, "models/small.json", b"{}")
        assert await get(store, "models/small.json") == b"{}"
    finally:
        await store.close()
    assert len(sent) == 3  # two parts and one small object
    for headers in sent:
        assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
        assert "content-md5" in headers["Authorization"].lower()  # a signed header
    assert sent[-1]["Content-MD5"] == "mZFLkyvTelC5g8XnyQrpOw=="  # MD5 of b"{}"


async def test_stat_answers_for_whole_objects_only(store: ObjectStore) -> None:
    await put(store, "models/m/w.bin", b"12345")
    info = await store.stat("models/m/w.bin")
    assert info is not None and (info.key, info.size) == ("models/m/w.bin", 5)
    assert await store.stat("models/m/missing.bin") is None
    assert await store.stat("models/m") is None  # a directory (or a common prefix) is no object


async def test_a_write_whose_source_breaks_off_is_continued_by_the_next(store: ObjectStore) -> None:
    """What a failed write stored stays findable (`partial`), and a write that resumes it ends byte-exact."""
    part = 5 * 1024 * 1024
    if isinstance(store, S3Store):
        store.part_size = part
    data = bytes(range(256)) * (3 * part // 256 + 1000)

    async def broken() -> AsyncIterator[bytes]:
        for i in range(0, 2 * part + 1000, 1024 * 1024):
            yield data[i : i + 1024 * 1024]
        raise ConnectionResetError("the source broke off")

    with pytest.raises(ConnectionResetError):
        await store.upload("models/m/big.bin", broken())
    assert await store.stat("models/m/big.bin") is None  # nothing committed
    resume = await store.partial("models/m/big.bin")
    assert resume is not None and 0 < resume.size <= 2 * part + 1024 * 1024
    if resume.readable:
        assert b"".join([c async for c in store.read_partial(resume)]) == data[: resume.size]

    async def rest() -> AsyncIterator[bytes]:
        yield data[resume.size :]

    await store.upload("models/m/big.bin", rest(), resume=resume)
    assert await get(store, "models/m/big.bin") == data
    assert await store.partial("models/m/big.bin") is None


async def test_ranged_reads_and_a_conversion_through_either_store(store: ObjectStore, tmp_path: Path) -> None:
    """The GGUF conversion reads tensors with ranged reads and streams its file into an upload: the same file on
    both backends, and a failed one leaves neither the object nor an unfinished upload behind."""
    prefix = "models/base-models/org-tiny"
    files = Checkpoint().files()
    for name, data in files.items():
        await put(store, f"{prefix}/{name}", data)
    weights = files["model.safetensors"]
    ranged = b"".join([c async for c in store.read(f"{prefix}/model.safetensors", 1000, 3000)])
    assert ranged == weights[1000:4000]
    stored = [StoredFile(name, len(data), "") for name, data in files.items()]
    conversion = Conversion(store, prefix, stored, "q4_0", "org-tiny-q4_0")
    converted = await conversion.write(await conversion.prepare())
    written = await get(store, conversion.key)
    (tmp_path / "m.gguf").write_bytes(written)
    assert converted.file.sha256 == hashlib.sha256(written).hexdigest()
    assert len(gguf.GGUFReader(tmp_path / "m.gguf").tensors) == 21

    await store.delete_keys([conversion.key])
    stream = await conversion.prepare()
    await put(store, f"{prefix}/model.safetensors", weights[: len(weights) // 2])  # cut short after planning
    with pytest.raises(TransientError, match="the file changed"):
        await conversion.write(stream)
    assert await store.stat(conversion.key) is None and await store.partial(conversion.key) is None
