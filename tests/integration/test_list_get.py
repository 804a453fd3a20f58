"""ListModels and GetModel rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from model_manager.core.errors import InvalidArgument, NotFound
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.store import catalog
from model_manager.store.records import Activation, Kind, LoadingStatus
from tests.helpers import OTHER_PROJECT, OTHER_TENANT, WHO, WORKER, Api


async def _bulk_loaded(api: Api, n: int) -> None:
    """n loaded base models, inserted directly (fast)."""
    async with api.ctx.db.transaction() as conn:
        for i in range(n):
            await catalog.insert_model(
                conn,
                Kind.BASE,
                {
                    "tenant_id": WHO.tenant_id,
                    "model_id": f"m-{i:04d}",
                    "loading_status": LoadingStatus.SUCCEEDED,
                    "path": "p",
                },
                api.ctx.now(),
            )


async def _catalogue(api: Api) -> None:
    """Two models in each listing group, plus models the caller must not see."""
    for b in ["base-b", "base-a", "base-d", "base-c"]:
        await api.loaded_base(b)
    for s in ["s2", "s1", "s4", "s3"]:
        await api.loaded_fine_tuned("base-a", s)
    for m in ["base-c", "base-a", "ft:base-a:s1", "ft:base-a:s2"]:
        await api.activate(m)
    await api.request_base("org/still-loading")
    await api.loaded_fine_tuned("base-a", "other", who=OTHER_PROJECT)
    await api.request_base("org/other-tenant", who=OTHER_TENANT)


EXPECTED_ORDER = [
    "base-a",
    "base-c",  # active base
    "ft:base-a:s1",
    "ft:base-a:s2",  # active fine-tuned
    "base-b",
    "base-d",  # inactive base
    "ft:base-a:s3",
    "ft:base-a:s4",  # inactive fine-tuned
]


async def test_order_is_active_base_active_ft_inactive_base_inactive_ft(api: Api) -> None:
    await _catalogue(api)
    resp = await api.list()
    assert [m.id for m in resp.data] == EXPECTED_ORDER
    assert (resp.object, resp.has_more, resp.total_items) == ("list", False, 8)


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 8])
async def test_pages_continue_across_groups_with_exact_has_more(api: Api, limit: int) -> None:
    await _catalogue(api)
    seen: list[str] = []
    after = ""
    while True:
        resp = await api.list(limit=limit, after=after)
        seen += [m.id for m in resp.data]
        assert resp.total_items == 8
        # has_more is true exactly when another model follows (upstream said true after a page ending at the last).
        assert resp.has_more == (len(seen) < 8)
        if not resp.has_more:
            break
        after = resp.data[-1].id
    assert seen == EXPECTED_ORDER


async def test_loading_models_only_with_include_loading_models(api: Api) -> None:
    await _catalogue(api)
    ids = [m.id for m in (await api.list(include_loading_models=True)).data]
    assert "org/still-loading" in ids and len(ids) == 9
    assert (await api.list(include_loading_models=True)).total_items == 9


async def test_limit_rules(api: Api) -> None:
    with pytest.raises(InvalidArgument, match="limit"):
        await api.list(limit=-1)
    await _bulk_loaded(api, 501)
    default = await api.list()
    assert len(default.data) == 100 and default.has_more and default.total_items == 501
    capped = await api.list(limit=10_000)
    assert len(capped.data) == 500 and capped.has_more


async def test_unknown_after_is_invalid(api: Api) -> None:
    await api.loaded_base("base-a")
    with pytest.raises(InvalidArgument, match='after: model "nope" not found'):
        await api.list(after="nope")


async def test_fine_tuned_models_of_other_projects_and_unpublished_ones_are_hidden(api: Api) -> None:
    await api.loaded_base("base-a")
    await api.loaded_fine_tuned("base-a", "mine")
    await api.loaded_fine_tuned("base-a", "theirs", who=OTHER_PROJECT)
    await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="base-a", suffix="job", organization_id="o", project_id="default")
    )
    ids = [m.id for m in (await api.list(include_loading_models=True)).data]
    assert ids == ["base-a", "ft:base-a:mine"]
    assert [m.id for m in (await api.list(who=OTHER_PROJECT)).data] == ["base-a", "ft:base-a:theirs"]


async def test_other_tenants_see_nothing(api: Api) -> None:
    await _catalogue(api)
    assert (await api.list(who=OTHER_TENANT, include_loading_models=True)).total_items == 1
    with pytest.raises(NotFound):
        await api.get("base-a", who=OTHER_TENANT)


async def test_get_hides_loading_models_unless_asked(api: Api) -> None:
    await api.request_base("org/name")
    with pytest.raises(NotFound, match='model "org/name" not found'):
        await api.get("org/name", loading=False)
    assert (await api.get("org/name")).loading_status == pb.ModelLoadingStatus.REQUESTED


async def test_get_finds_base_then_published_fine_tuned(api: Api) -> None:
    await api.loaded_base("base-a")
    ft = await api.loaded_fine_tuned("base-a", "x")
    got = await api.get(ft, loading=False)
    assert (got.id, got.is_base_model, got.loading_status) == (ft, False, pb.ModelLoadingStatus.SUCCEEDED)
    with pytest.raises(NotFound, match='model "missing" not found'):
        await api.get("missing")
    with pytest.raises(InvalidArgument, match="id is required"):
        await api.get("")


async def test_rows_with_unspecified_status_count_as_loaded(api: Api) -> None:
    async with api.ctx.db.transaction() as conn:
        await catalog.insert_model(
            conn,
            Kind.BASE,
            {
                "tenant_id": WHO.tenant_id,
                "model_id": "legacy",
                "loading_status": 0,
                "activation_status": Activation.ACTIVE,
            },
            api.ctx.now(),
        )
    assert [m.id for m in (await api.list()).data] == ["legacy"]


async def test_a_project_scoped_model_shadows_the_global_one_of_the_same_id(api: Api) -> None:
    await api.loaded_base("m", path="models/base-models/m-global")
    await api.loaded_base("m", path="models/base-models/m-scoped", project_id=OTHER_PROJECT.project_id)
    listed = await api.list(who=OTHER_PROJECT)
    assert [(m.id, m.project.id if m.project else "") for m in listed.data] == [("m", OTHER_PROJECT.project_id)]
    assert listed.total_items == 1
    assert (await api.get("m", who=OTHER_PROJECT)).project.id == OTHER_PROJECT.project_id  # type: ignore[union-attr]
    assert (await api.get("m")).project is None


async def _all_pages(api: Api, **kw: Any) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        resp = await api.list(limit=2, after=after, **kw)
        ids += [m.id for m in resp.data]
        if not resp.has_more:
            return ids
        after = resp.data[-1].id


async def test_total_items_stays_exact_through_a_models_life(api: Api) -> None:
    """total_items comes from trigger-kept counters: check it against the pages after every kind of change."""

    async def check() -> None:
        for loading in (False, True):
            ids = await _all_pages(api, include_loading_models=loading)
            assert (await api.list(include_loading_models=loading)).total_items == len(ids), (loading, ids)

    await api.request_base("org/a")
    await api.request_base("org/b")
    await check()
    claim = await api.acquire_base()
    await api.loaded_base("org-a")
    await api.base_status(
        claim.base_model_id, success=pb.UpdateBaseModelLoadingStatusRequestSuccess(), attempt=claim.attempt
    )
    await check()
    claim = await api.acquire_base()
    await api.base_status(
        "org/b", failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="x"), attempt=claim.attempt
    )
    await check()
    ft = await api.loaded_fine_tuned("org-a", "s")
    reg = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="org-a", suffix="r", organization_id="o", project_id="default")
    )
    await check()
    await api.worker.publish_model(WORKER, pb.PublishModelRequest(id=reg.id))
    await api.loaded_base(
        "org-a", path="models/base-models/m-scoped", project_id=WHO.project_id
    )  # shadows the global org-a
    await check()
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id=ft))
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/b"))
    await check()
    assert (await api.list(include_loading_models=True)).total_items == 2
