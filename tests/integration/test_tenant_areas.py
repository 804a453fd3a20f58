"""Every tenant stores in an area of its own, assigned by the server: `tenants/<tenant>/` for every tenant but the
default one, which keeps llmariner's layout outside `tenants/`. No worker call can name another tenant's files, in
either order of events, and a database written before areas existed keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from model_manager.core.errors import InvalidArgument
from model_manager.core.identity import Identity, Role
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config
from model_manager.service.context import ServiceContext
from model_manager.store import catalog
from model_manager.store.database import Database, _sqlite_engine
from model_manager.store.migrate import _alembic_config, migrate
from model_manager.store.records import Kind, LoadingStatus, ModelColumns
from tests.helpers import HF, WORKER, Api

A_WORKER = Identity("t1", "", "", Role.WORKER)
B_WORKER = Identity("tenant-b", "", "", Role.WORKER)
A_ADMIN = Identity("t1", "org-a", "p1", Role.ADMIN)


def _base(model_id: str, path: str) -> pb.CreateBaseModelRequest:
    return pb.CreateBaseModelRequest(
        id=model_id, path=path, formats=[pb.ModelFormat.HUGGING_FACE], source_repository=HF
    )


def _register(suffix: str = "x") -> pb.RegisterModelRequest:
    return pb.RegisterModelRequest(base_model="base", suffix=suffix, organization_id="org-a", project_id="p1")


async def _prefix(api: Api, who: Identity) -> str:
    async with api.ctx.db.reading() as conn:
        return await api.ctx.path_prefix(conn, who.tenant_id)


async def test_each_tenant_gets_an_area_the_others_cannot_name(api: Api) -> None:
    assert await _prefix(api, WORKER) == "models"  # the default tenant: llmariner's layout, unchanged
    assert await _prefix(api, A_WORKER) == "tenants/t1/models"
    assert await _prefix(api, B_WORKER) == "tenants/tenant-b/models"
    for path in ("models/t1", "models/base-models/x", "tenants/t1/models/t1", "tenants/t1", "tenants", "tenants/x"):
        with pytest.raises(InvalidArgument, match="must lie under this tenant's storage prefix 'tenants/tenant-b/"):
            await api.worker.create_base_model(B_WORKER, _base("squat", path))


async def test_a_tenants_future_fine_tuned_area_cannot_be_squatted_first(api: Api) -> None:
    """Row 1, first order: B registers a base model where A's fine-tuned models would go, then A registers one."""
    with pytest.raises(InvalidArgument):
        await api.worker.create_base_model(B_WORKER, _base("squat", "models/t1"))
    await api.worker.create_base_model(A_WORKER, _base("base", "tenants/t1/models/base-models/base"))
    registered = await api.worker.register_model(A_WORKER, _register())
    assert registered.path.startswith("tenants/t1/models/t1/ft:base:x-")


async def test_a_tenants_fine_tuned_files_cannot_be_claimed_after_they_exist(api: Api) -> None:
    """Row 1, other order: A registers first; B cannot name A's files, what holds them, or what they hold."""
    await api.worker.create_base_model(A_WORKER, _base("base", "tenants/t1/models/base-models/base"))
    path = (await api.worker.register_model(A_WORKER, _register())).path
    for hijack in (path, f"{path}/inner", path.rsplit("/", 1)[0]):
        with pytest.raises(InvalidArgument):
            await api.worker.create_base_model(B_WORKER, _base("mine", hijack))
        with pytest.raises(InvalidArgument):
            await api.worker.register_model(
                B_WORKER,
                pb.RegisterModelRequest(base_model="b", suffix="y", organization_id="o", project_id="p", path=hijack),
            )


async def test_the_same_id_gives_no_access_to_another_tenants_files(api: Api) -> None:
    """Row 2: base model "x" of tenant A; tenant B's worker registers its own "x" at A's path."""
    a_path = "tenants/t1/models/base-models/x"
    await api.worker.create_base_model(A_WORKER, _base("x", a_path))
    with pytest.raises(InvalidArgument):
        await api.worker.create_base_model(B_WORKER, _base("x", a_path))
    # A row of another tenant written before areas existed (in the default tenant's area) is walled the same way:
    # the default tenant may not register its own "x" over it.
    async with api.ctx.db.transaction() as conn:
        await catalog.insert_model(conn, Kind.BASE, _legacy_base("tenant-b", "x", "models/base-models/x"), 0)
    with pytest.raises(InvalidArgument, match="files of a model of another tenant"):
        await api.worker.create_base_model(WORKER, _base("x", "models/base-models/x"))
    with pytest.raises(InvalidArgument, match="files of a model of another tenant"):
        await api.worker.create_base_model(WORKER, _base("y", "models/base-models/x/inner"))
    await api.worker.create_base_model(WORKER, _base("x", "models/base-models/x@own"))  # beside it is the default's


def _legacy_base(tenant: str, model_id: str, path: str) -> ModelColumns:
    return {
        "tenant_id": tenant,
        "project_id": "",
        "model_id": model_id,
        "path": path,
        "source_repository": int(HF),
        "loading_status": LoadingStatus.SUCCEEDED,
        "config": model_config.encode(model_config.default_config()),
    }


async def test_a_fine_tuned_destination_never_lies_in_an_older_row_of_another_tenant(api: Api) -> None:
    """Before areas, another tenant's worker could register a model where the default tenant's fine-tuned models go;
    such a row stays, and a request whose destination it holds is refused instead of writing into it."""
    await api.loaded_base("base")
    async with api.ctx.db.transaction() as conn:
        squat = _legacy_base("tenant-b", "squat", "models/default-tenant-id/default")
        await catalog.insert_model(conn, Kind.BASE, squat, 0)
    with pytest.raises(InvalidArgument, match="files of a model of another tenant"):
        await api.fine_tuned("base", "mine")


async def test_a_storage_prefix_lands_in_the_workers_own_area(api: Api) -> None:
    """Row 4: B asks for `models/base-models` (every tenant's base models once lived there) and gets its own."""
    made = await api.worker.create_storage_config(
        B_WORKER, pb.CreateStorageConfigRequest(path_prefix="models/base-models")
    )
    assert made.path_prefix == "tenants/tenant-b/models/base-models"
    assert (await api.worker.get_storage_config(B_WORKER, pb.GetStorageConfigRequest())).path_prefix == made.path_prefix
    await api.worker.create_base_model(B_WORKER, _base("base", f"{made.path_prefix}/base-models/base"))
    registered = await api.worker.register_model(
        B_WORKER, pb.RegisterModelRequest(base_model="base", suffix="x", organization_id="o", project_id="p")
    )
    assert registered.path.startswith("tenants/tenant-b/models/base-models/tenant-b/ft:base:x-")
    # A prefix already inside the area is kept as it is; the default tenant may not take the other tenants' root.
    own = await api.worker.create_storage_config(A_WORKER, pb.CreateStorageConfigRequest(path_prefix="tenants/t1/m"))
    assert own.path_prefix == "tenants/t1/m"
    for prefix in ("tenants", "tenants/t1", "tenants/t1/m/x"):
        with pytest.raises(InvalidArgument, match="'tenants/' holds the other tenants' storage"):
            await api.worker.create_storage_config(WORKER, pb.CreateStorageConfigRequest(path_prefix=prefix))


async def test_fine_tuned_models_requested_by_a_tenant_go_to_its_area(api: Api, ctx: ServiceContext) -> None:
    await api.worker.create_base_model(A_WORKER, _base("base", "tenants/t1/models/base-models/base"))
    model = await api.models.create_model(
        A_ADMIN,
        pb.CreateModelRequest(
            is_fine_tuned_model=True,
            base_model_id="base",
            suffix="ft",
            source_repository=HF,
            model_file_location="org/adapter",
        ),
    )
    claim = await api.worker.acquire_unloaded_model(A_WORKER, pb.AcquireUnloadedModelRequest(holder="l"))
    assert (claim.model_id, claim.dest_path) == (model.id, "tenants/t1/models/t1/p1/ft:base:ft")


# ---- a database written before tenant areas ---------------------------------------------------------------

LEGACY_PREFIXES = {
    "default-tenant-id": ("models", "models"),
    "tenant-a": ("models", "tenants/tenant-a/models"),
    "a_b": ("tenants/aXb/m", "tenants/a_b/tenants/aXb/m"),  # "_" is not a wildcard here
    "tenant-c": ("tenants/tenant-c/x", "tenants/tenant-c/x"),  # already in its area
}


@pytest.fixture
async def legacy_db(tmp_path: Path) -> Database:
    """A database first written by schema revision 0011, with every tenant's prefix in the shared namespace."""
    db = Database(_sqlite_engine(str(tmp_path / "legacy.db")))
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0011"))
        for tenant, (prefix, _) in LEGACY_PREFIXES.items():
            await conn.execute(
                sa.text("INSERT INTO storage_configs (tenant_id, path_prefix, created_at) VALUES (:t, :p, 0)"),
                {"t": tenant, "p": prefix},
            )
        for tenant, path in (("tenant-a", "models/tenant-a/ft:base:old"), ("default-tenant-id", "models/x/ft:b:y")):
            await conn.execute(
                sa.text(
                    "INSERT INTO models (tenant_id, organization_id, project_id, model_id, base_model_id, suffix,"
                    " path, is_published, loading_status, source_repository, activation_status, created_at,"
                    " updated_at, config) VALUES (:t, 'o', 'p', :m, 'base', 'old', :path, true, 3, 4, 2, 0, 0, '{}')"
                ),
                {"t": tenant, "m": path.rsplit("/", 1)[1], "path": path},
            )
    await migrate(db)
    return db


async def test_a_database_of_the_previous_schema_moves_prefixes_into_areas(legacy_db: Database, tmp_path: Path) -> None:
    api = Api(ServiceContext(db=legacy_db, objects=LocalStore(tmp_path / "objects")))
    try:
        async with legacy_db.reading() as conn:
            query = sa.text("SELECT tenant_id, path_prefix FROM storage_configs")
            rows: dict[str, str] = {t: p for t, p in (await conn.execute(query)).all()}
        assert rows == {tenant: after for tenant, (_, after) in LEGACY_PREFIXES.items()}
        a_worker = Identity("tenant-a", "", "", Role.WORKER)
        # The old model keeps its path; the tenant's next one goes to its area; nobody else may name the old one.
        old = await api.worker.get_model_path(a_worker, pb.GetModelPathRequest(id="ft:base:old"))
        assert old.path == "models/tenant-a/ft:base:old"
        await api.worker.create_base_model(a_worker, _base("base", "tenants/tenant-a/models/base-models/base"))
        fresh = await api.worker.register_model(
            a_worker, pb.RegisterModelRequest(base_model="base", suffix="new", organization_id="o", project_id="p")
        )
        assert fresh.path.startswith("tenants/tenant-a/models/tenant-a/ft:base:new-")
        for path in ("models/tenant-a", "models/tenant-a/ft:base:old/x"):
            with pytest.raises(InvalidArgument, match="files of a model of another tenant"):
                await api.worker.create_base_model(WORKER, _base("z", path))
    finally:
        await legacy_db.close()
