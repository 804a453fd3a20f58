"""Base models stored once per content (source and resolved revision) and freed when the last model using them goes,
through the loader, the worker API and the hub stand-in (which counts the bytes it serves)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from model_manager.core.identity import Identity
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.store.database import Database, _sqlite_engine
from model_manager.store.migrate import _alembic_config, migrate
from tests.helpers import OTHER_PROJECT, WHO, WORKER, Api
from tests.loader.conftest import Harness, minilm_files

PREFIX = "models/base-models"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"w" * 400_000}


async def request(api: Api, model_id: str, who: Identity) -> None:
    await api.models.create_model(
        who,
        pb.CreateModelRequest(id=model_id, source_repository=pb.SourceRepository.HUGGING_FACE, is_project_scoped=True),
    )


async def base_path(api: Api, model_id: str, who: Identity) -> str:
    req = pb.GetBaseModelPathRequest(id=model_id, project_id=who.project_id)
    return (await api.worker.get_base_model_path(WORKER, req)).path


async def delete(api: Api, model_id: str, who: Identity) -> None:
    await api.models.delete_model(who, pb.DeleteModelRequest(id=model_id))


async def stored(harness: Harness, path: str) -> dict[str, bytes]:
    """The files under `path`, read back from the store."""
    out = {}
    for o in await harness.store.list_objects(path + "/"):
        out[o.key.removeprefix(path + "/")] = b"".join([c async for c in harness.store.read(o.key)])
    return out


async def test_a_second_project_gets_the_same_files_without_a_second_transfer(harness: Harness, api: Api) -> None:
    files = minilm_files()  # all-MiniLM-L6-v2's real files
    repo = harness.hub.add("org/shared", files, commit=COMMIT_A)
    await request(api, "org/shared", WHO)
    await harness.drain()
    first = repo.served
    assert first >= sum(len(d) for d in files.values()) - len(files["README.md"])  # small files may come by API

    await request(api, "org/shared", OTHER_PROJECT)
    await harness.drain()
    assert repo.served == first  # not one byte of a file again
    model = await api.get("org-shared", OTHER_PROJECT, loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert model.revision == COMMIT_A
    assert sorted(f.path for f in model.files) == sorted(files)
    # What the first load read, registered again.
    assert model.metadata is not None and model.metadata.architecture == "BertModel"

    # Inference engines ask GetBaseModelPath as before and get the one shared copy.
    path = await base_path(api, "org-shared", WHO)
    assert path == await base_path(api, "org-shared", OTHER_PROJECT)
    assert path.startswith(f"{PREFIX}/org/shared@")
    assert await stored(harness, path) == files
    objects = await harness.store.list_objects(PREFIX)
    assert len(objects) == len(files)  # stored once, not once per project
    stored_bytes = sum(o.size for o in objects)
    print(f"two projects: {stored_bytes} bytes stored, {first} sent by the hub; {stored_bytes} saved")


async def test_another_revision_is_stored_apart_and_overwrites_nothing(harness: Harness, api: Api) -> None:
    harness.hub.add("org/moving", dict(FILES), commit=COMMIT_A)
    await request(api, "org/moving", WHO)
    await harness.drain()
    newer = {"config.json": b'{"model_type": "bert", "v": 2}', "model.safetensors": b"v" * 300_000}
    harness.hub.add("org/moving", newer, commit=COMMIT_B)
    await request(api, "org/moving", OTHER_PROJECT)
    await harness.drain()

    old_path, new_path = await base_path(api, "org-moving", WHO), await base_path(api, "org-moving", OTHER_PROJECT)
    assert old_path != new_path
    assert await stored(harness, old_path) == FILES
    assert await stored(harness, new_path) == newer
    assert (await api.get("org-moving", OTHER_PROJECT, loading=False)).revision == COMMIT_B


async def test_shared_files_go_with_the_last_model_that_uses_them(harness: Harness, api: Api) -> None:
    harness.hub.add("org/shared", dict(FILES), commit=COMMIT_A)
    for who in (WHO, OTHER_PROJECT):
        await request(api, "org/shared", who)
        await harness.drain()
    path = await base_path(api, "org-shared", WHO)

    await delete(api, "org-shared", WHO)
    assert await stored(harness, path) == FILES  # the other project's model still uses them
    assert await base_path(api, "org-shared", OTHER_PROJECT) == path
    await delete(api, "org-shared", OTHER_PROJECT)
    assert await harness.store.list_objects(PREFIX) == []


async def test_deleting_a_model_keeps_the_files_a_load_of_the_same_content_is_writing(
    harness: Harness, api: Api
) -> None:
    # The other project's load failed half-way (a corrupt download): its row remembers the directory it wrote to.
    sha = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    harness.hub.add("org/shared", dict(FILES), commit=COMMIT_A, published_sha256={"model.safetensors": "0" * 64})
    await request(api, "org/shared", OTHER_PROJECT)
    await harness.drain()
    failed = await api.get("org/shared", OTHER_PROJECT)
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED, failed

    # This project's load of the same content runs; the failed model is deleted while it does.
    repo = harness.hub.add("org/shared", dict(FILES), commit=COMMIT_A, throttle=0.02)
    assert hashlib.sha256(repo.files["model.safetensors"]).hexdigest() == sha
    await request(api, "org/shared", WHO)
    loading = asyncio.create_task(harness.drain())
    while not repo.served:  # noqa: ASYNC110 - the load has begun writing
        await asyncio.sleep(0.01)
    config_written = False
    while not config_written:
        config_written = any(o.key.endswith("/config.json") for o in await harness.store.list_objects(PREFIX))
        await asyncio.sleep(0.01)
    await delete(api, "org/shared", OTHER_PROJECT)
    await loading

    path = await base_path(api, "org-shared", WHO)
    assert await stored(harness, path) == FILES


LEGACY_ROW = (
    "INSERT INTO base_models (tenant_id, project_id, model_id, path, formats, revision, source_repository,"
    " loading_status, files, created_at, updated_at) VALUES ('default-tenant-id', :project, :model, :path, '2',"
    " :revision, 2, 3, :files, 1, 1)"
)
LEGACY = (
    ("default", "org-old", f"{PREFIX}/org/old", COMMIT_A),
    # Two revisions of one model in one directory (loads before 0010 overwrote it): neither is sure to be there.
    ("default", "org-clash", f"{PREFIX}/org/clash", COMMIT_A),
    ("other-project", "org-clash", f"{PREFIX}/org/clash", COMMIT_B),
)


def files_json(files: dict[str, bytes]) -> str:
    return json.dumps([{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in files.items()])


@pytest.fixture
async def sqlite_db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """The loader harness's database; for a test marked `legacy`, first written by schema revision 0009."""
    database = Database(_sqlite_engine(str(tmp_path / "test.db")))
    if request.node.get_closest_marker("legacy"):
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0009"))
            for project, model, path, revision in LEGACY:
                params = {"project": project, "model": model, "path": path, "revision": revision}
                await conn.execute(sa.text(LEGACY_ROW), {**params, "files": files_json(FILES)})
    await migrate(database)
    yield database
    await database.close()


@pytest.mark.legacy
async def test_a_database_of_the_previous_schema_keeps_working_and_shares_its_files(harness: Harness, api: Api) -> None:
    """Migration 0010 on a database written by revision 0009: loaded models get the content key of the revision
    they recorded (unless another revision overwrote their directory), and a new load of that content uses the
    files they already have where they are."""
    async with harness.ctx.db.reading() as conn:
        query = sa.text("SELECT project_id, model_id, content_key FROM base_models")
        keys = {(p, m): k for p, m, k in (await conn.execute(query)).all()}
    assert keys == {
        ("default", "org-old"): f"hugging-face:org-old@{COMMIT_A}",
        ("default", "org-clash"): "",
        ("other-project", "org-clash"): "",
    }
    for name, data in FILES.items():
        await harness.store.upload(f"{PREFIX}/org/old/{name}", _chunks(data))

    repo = harness.hub.add("org/old", dict(FILES), commit=COMMIT_A)
    await request(api, "org/old", OTHER_PROJECT)
    await harness.drain()
    assert repo.served == 0
    assert await base_path(api, "org-old", OTHER_PROJECT) == f"{PREFIX}/org/old"
    assert await base_path(api, "org-old", WHO) == f"{PREFIX}/org/old"  # the old model is as it was


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
