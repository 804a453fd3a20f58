"""What a load may copy from a bucket: the loaders read with their own credentials, so a request may name only
what its caller could read itself (no confused deputy). In the store's own bucket: the caller's tenant area, and
no model of another tenant or project; another bucket: only one the operator listed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from model_manager.core.errors import PermissionDenied
from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.store import catalog
from model_manager.store.records import Kind
from tests.helpers import OBJECT_STORE, WHO, Api
from tests.integration.test_tenant_areas import _legacy_base

A_P1 = Identity("t1", "org-a", "p1", Role.ADMIN)
A_P2 = Identity("t1", "org-a", "p2", Role.ADMIN)
B = Identity("tenant-b", "org-b", "p1", Role.ADMIN)


@pytest.fixture
def api(ctx: ServiceContext) -> Api:
    loading = replace(ctx.loading, allowed_source_buckets=("bucket", "adapters/team-a"))
    return Api(replace(ctx, platform_bucket="store", loading=loading))


async def _bases(api: Api) -> None:
    for who in (A_P1, B, WHO):
        worker = Identity(who.tenant_id, "", "", Role.WORKER)
        async with api.ctx.db.reading() as conn:
            root = await api.ctx.base_model_root(conn, who.tenant_id)
        await api.worker.create_base_model(
            worker, pb.CreateBaseModelRequest(id="base", path=f"{root}/base", formats=[pb.ModelFormat.HUGGING_FACE])
        )


async def _ft(api: Api, who: Identity, suffix: str, location: str) -> pb.Model:
    return await api.fine_tuned("base", suffix, who=who, location=location)


async def test_a_location_in_the_stores_bucket_must_lie_in_the_callers_area(api: Api) -> None:
    await _bases(api)
    a_model = await _ft(api, A_P1, "a", "s3://store/tenants/t1/uploads/run-1")  # its own area: allowed
    claim = await api.worker.acquire_unloaded_model(
        Identity("t1", "", "", Role.WORKER), pb.AcquireUnloadedModelRequest()
    )
    assert claim.model_id == a_model.id
    for location in (
        f"s3://store/{claim.dest_path}",  # A's model, by B
        "s3://store/tenants/t1",
        "s3://store/tenants",
        "s3://store/models/base-models/base",  # the default tenant's
    ):
        with pytest.raises(PermissionDenied, match="outside this tenant's storage area"):
            await _ft(api, B, "b", location)
    assert [m.id for m in (await api.list(B, include_loading_models=True)).data] == ["base"]


async def test_a_location_may_not_hold_a_model_of_another_project_or_an_older_tenants(api: Api) -> None:
    await _bases(api)
    other = await _ft(api, A_P2, "p2", "s3://bucket/jobs/p2")
    async with api.ctx.db.reading() as conn:
        p2_path = (await catalog.find_fine_tuned(conn, "t1", other.id, published_only=False)).path  # type: ignore[union-attr]
        a_base = await api.ctx.base_model_root(conn, "t1")
    with pytest.raises(PermissionDenied, match="files of a model this caller cannot read"):
        await _ft(api, A_P1, "x", f"s3://store/{p2_path}")
    with pytest.raises(PermissionDenied, match="files of a model this caller cannot read"):
        await _ft(api, A_P1, "y", f"s3://store/{p2_path.rsplit('/', 1)[0]}")  # the directory holding it
    await _ft(api, A_P1, "z", f"s3://store/{a_base}/base")  # the tenant's global base model: readable
    # A row of another tenant from before tenant areas, in the default tenant's area.
    async with api.ctx.db.transaction() as conn:
        await catalog.insert_model(conn, Kind.BASE, _legacy_base("tenant-b", "old", "models/base-models/old"), 0)
    with pytest.raises(PermissionDenied, match="files of a model this caller cannot read"):
        await _ft(api, WHO, "w", "s3://store/models/base-models/old/config.json")


async def test_other_buckets_only_where_the_operator_listed_them(api: Api) -> None:
    await _bases(api)
    await _ft(api, B, "one", "s3://bucket/anything")
    await _ft(api, B, "two", "s3://adapters/team-a/run")
    for location in ("s3://adapters/team-b/run", "s3://adapters/team-ab/run", "s3://elsewhere/run"):
        with pytest.raises(PermissionDenied, match="is not one models may be loaded from"):
            await _ft(api, B, "three", location)


async def test_a_base_model_from_a_source_bucket_that_is_the_stores_own(api: Api) -> None:
    api.ctx.mirror = ("store", "mirror")
    await api.request_base("mirrored", OBJECT_STORE, skip_source_check=True)  # the default tenant's area
    with pytest.raises(PermissionDenied, match="outside this tenant's storage area"):
        await api.request_base("mirrored", OBJECT_STORE, who=B)
    api.ctx.mirror = ("mirror-bucket", "")
    await api.request_base("mirrored", OBJECT_STORE, who=B)  # a bucket the operator set apart for sources


async def test_a_retry_checks_the_location_again(api: Api, ctx: ServiceContext) -> None:
    await _bases(api)
    model = await _ft(api, B, "later", "s3://bucket/run")
    claim = await api.worker.acquire_unloaded_model(
        Identity("tenant-b", "", "", Role.WORKER), pb.AcquireUnloadedModelRequest()
    )
    failure = pb.UpdateModelLoadingStatusRequestFailure(reason="x")
    await api.worker.update_model_loading_status(
        Identity("tenant-b", "", "", Role.WORKER),
        pb.UpdateModelLoadingStatusRequest(id=model.id, attempt=claim.attempt, failure=failure),
    )
    api.ctx.loading = replace(api.ctx.loading, allowed_source_buckets=())  # the operator took the bucket off
    with pytest.raises(PermissionDenied, match="'bucket' is not one models may be loaded from"):
        await api.models.retry_model(B, pb.RetryModelRequest(id=model.id))
    assert (await api.get(model.id, B)).loading_status == pb.ModelLoadingStatus.FAILED
