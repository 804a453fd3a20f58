"""Property: whatever callers of two tenants and two projects do with aliases and models, in whatever order, an
alias never lets a caller read a model it could not read by id, no caller sees another tenant's or another
project's alias, no alias has the id of a model, and every alias names a model that exists. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from model_manager.core.errors import NotFound, ServiceError
from model_manager.core.identity import Identity, Role
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.aliases import AliasService
from model_manager.service.context import ServiceContext
from tests.conftest import TEST_LOADING
from tests.helpers import Api
from tests.integration.test_tenant_walls import SETTINGS, Fresh, fresh  # noqa: F401 - the fixture

TENANTS = ("t-a", "t-b")
PROJECTS = ("p1", "p2")
ROLES = (Role.ADMIN, Role.WRITER, Role.READER)
CALLERS = [Identity(t, "org", p, r) for t in TENANTS for p in PROJECTS for r in ROLES]
NAMES = ("chat", "m1", "m2", "embed")
MODELS = ("m1", "m2", "m3")


def _ops() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    caller = st.integers(0, len(CALLERS) - 1)
    op = st.one_of(
        # A loaded base model of a tenant, global ("") or of a project.
        st.tuples(
            st.just("model"), st.sampled_from(TENANTS), st.sampled_from(("", *PROJECTS)), st.sampled_from(MODELS)
        ),
        st.tuples(st.just("set"), caller, st.sampled_from(NAMES), st.sampled_from(MODELS), st.booleans()),
        st.tuples(st.just("delete_alias"), caller, st.sampled_from(NAMES)),
        st.tuples(st.just("delete_model"), caller, st.sampled_from((*MODELS, *NAMES))),
    )
    return st.lists(op, min_size=1, max_size=20)


async def _run(api: Api, aliases: AliasService, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "model":
        _, tenant, project, model_id = op
        worker = Identity(tenant, "", "", Role.WORKER)
        async with api.ctx.db.reading() as conn:
            root = await api.ctx.base_model_root(conn, tenant)  # where the tenant's loaders put base models
        path = f"{root}/{model_id}-{project or 'global'}"
        request = pb.CreateBaseModelRequest(id=model_id, path=path, formats=[pb.ModelFormat.HUGGING_FACE])
        request.project_id = project
        await api.worker.create_base_model(worker, request)
    elif kind == "set":
        _, caller, name, model_id, scoped = op
        await aliases.set_alias(
            CALLERS[caller], pb.SetAliasRequest(name=name, model_id=model_id, is_project_scoped=scoped)
        )
    elif kind == "delete_alias":
        await aliases.delete_alias(CALLERS[op[1]], pb.DeleteAliasRequest(name=op[2]))
    else:
        await api.models.delete_model(CALLERS[op[1]], pb.DeleteModelRequest(id=op[2]))


async def _check(api: Api, aliases: AliasService) -> None:
    async with api.ctx.db.reading() as conn:
        rows = (await conn.execute(sa.text("SELECT tenant_id, project_id, name, model_id FROM aliases"))).all()
        models = (await conn.execute(sa.text("SELECT tenant_id, model_id FROM base_models"))).all()
    model_ids = {(t, m) for t, m in models}
    for tenant, _, name, model_id in rows:
        assert (tenant, name) not in model_ids, ("an alias has a model's id", tenant, name)
        assert (tenant, model_id) in model_ids, ("an alias names a model that is gone", tenant, name, model_id)
    for who in CALLERS:
        listed = {a.name for a in (await aliases.list_aliases(who, pb.ListAliasesRequest())).data}
        allowed = {n for t, p, n, _ in rows if t == who.tenant_id and p in ("", who.project_id)}
        assert listed == allowed, (who, listed, allowed)
        for name in NAMES:
            try:
                got = await api.get(name, who=who)
            except NotFound:
                continue
            # Whatever an alias names, the caller could read it by its own id, with the aliases it may see.
            direct = await api.get(got.id, who=who)
            assert direct.id == got.id and set(got.aliases) <= allowed, (who, name, got.id, got.aliases)
            # Read through an alias: one the caller sees.
            assert got.id == name or name in allowed, (who, name, got.id)


async def test_the_events_do_what_they_say(tmp_path: Path, fresh: Fresh) -> None:  # noqa: F811
    """The harness is not vacuous: models are made, aliases set and read through, walls hold."""
    db = await fresh()
    try:
        ctx = ServiceContext(db=db, objects=LocalStore(tmp_path / "objects"), loading=TEST_LOADING)
        api, aliases = Api(ctx), AliasService(ctx)
        admin_a1, writer_a2 = CALLERS.index(Identity("t-a", "org", "p1", Role.ADMIN)), 4
        for op in [
            ("model", "t-a", "", "m3"),
            ("set", admin_a1, "chat", "m3", True),
            ("set", admin_a1, "embed", "m3", False),
        ]:
            await _run(api, aliases, op)
        assert (await api.get("chat", who=CALLERS[admin_a1])).id == "m3"
        with contextlib.suppress(NotFound):
            await api.get("chat", who=CALLERS[writer_a2])  # p2 does not see p1's alias
            raise AssertionError("p2 read p1's alias")
        assert (await api.get("embed", who=CALLERS[writer_a2])).aliases == ["embed"]
        await _check(api, aliases)
    finally:
        await db.close()


@SETTINGS
@given(ops=_ops())
def test_no_order_of_events_lets_an_alias_cross_a_wall(
    ops: list[tuple[Any, ...]],
    fresh: Fresh,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    async def run() -> None:
        db = await fresh()
        try:
            ctx = ServiceContext(db=db, objects=LocalStore(tmp_path / "objects"), loading=TEST_LOADING)
            api, aliases = Api(ctx), AliasService(ctx)
            for op in ops:
                with contextlib.suppress(ServiceError):  # refused, with a reason: nothing changed
                    await _run(api, aliases, op)
            await _check(api, aliases)
        finally:
            await db.close()

    asyncio.run(run())
