"""Property: whatever callers of two tenants and two projects do with pushes, in whatever order (pushes asked for,
finishing or failing, servers going silent), a push never copies a model its caller could not read, no caller sees
another tenant's or another project's push, and one destination of a tenant never has two live pushes at once. On
SQLite and PostgreSQL.

The pusher here is a stand-in that finishes when the test says (the registry protocol is tested against a stock
registry elsewhere): these rules are the service's."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from model_manager.core.errors import NotFound, ServiceError
from model_manager.core.identity import Identity, Role
from model_manager.core.push import PushFailed, PushPlan, Report
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.pushes import PUSHING, STALE, PushService
from tests.conftest import TEST_LOADING, FakeClock
from tests.helpers import Api
from tests.integration.test_tenant_walls import SETTINGS, Fresh, fresh  # noqa: F401 - the fixture

TENANTS = ("t-a", "t-b")
PROJECTS = ("p1", "p2")
# Writers push; a reader of each tenant reads (and is refused when it pushes).
CALLERS = [Identity(t, "org", p, Role.WRITER) for t in TENANTS for p in PROJECTS] + [
    Identity(t, "org", "p1", Role.READER) for t in TENANTS
]
MODELS = ("m1", "m2")
DESTINATIONS = ("oci://registry.test/a:v1", "oci://registry.test/b:v1")


class HeldPusher:
    """Each push waits until the test ends it, as a slow registry would keep it going."""

    def __init__(self) -> None:
        self.held: list[tuple[asyncio.Future[str], asyncio.Task[Any]]] = []

    async def push(self, plan: PushPlan, report: Report) -> str:
        task = asyncio.current_task()
        assert task is not None
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.held.append((done, task))
        return await done


def _ops() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    caller = st.integers(0, len(CALLERS) - 1)
    op = st.one_of(
        st.tuples(
            # Global models half the time: every project of the tenant pushes those, so tags get contended.
            st.just("model"),
            st.sampled_from(TENANTS),
            st.sampled_from(("", "", *PROJECTS)),
            st.sampled_from(MODELS),
        ),
        st.tuples(st.just("push"), caller, st.sampled_from(MODELS), st.sampled_from(DESTINATIONS)),
        st.tuples(st.just("end"), st.integers(0, 5), st.booleans()),
        st.tuples(
            st.just("silence"),
        ),  # the servers running pushes stop saying anything
    )
    return st.lists(op, min_size=1, max_size=20)


async def _run(api: Api, pushes: PushService, pusher: HeldPusher, clock: FakeClock, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "model":
        _, tenant, project, model_id = op
        async with api.ctx.db.reading() as conn:
            root = await api.ctx.base_model_root(conn, tenant)
        request = pb.CreateBaseModelRequest(
            id=model_id,
            path=f"{root}/{model_id}-{project or 'global'}",
            formats=[pb.ModelFormat.HUGGING_FACE],
            files=[pb.ModelFile(path="config.json", size=2, sha256="0" * 64)],
        )
        request.project_id = project
        await api.worker.create_base_model(Identity(tenant, "", "", Role.WORKER), request)
    elif kind == "push":
        _, caller, model_id, destination = op
        await pushes.push_model(CALLERS[caller], pb.PushModelRequest(id=model_id, destination=destination))
        for _ in range(3):  # let the push's task start and reach the pusher
            await asyncio.sleep(0)
    elif kind == "end":
        live = [(f, t) for f, t in pusher.held if not f.done()]
        if live:
            done, task = live[op[1] % len(live)]
            if op[2]:
                done.set_result("sha256:" + "1" * 64)
            else:
                done.set_exception(PushFailed("the registry said no"))
            await asyncio.wait([task])
    else:
        clock.advance(STALE + 1)


async def _check(api: Api, pushes: PushService, clock: FakeClock) -> None:
    async with api.ctx.db.reading() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT push_id, tenant_id, project_id, model_id, destination, status, updated_at FROM model_pushes"
                )
            )
        ).all()
        models = (await conn.execute(sa.text("SELECT tenant_id, project_id, model_id FROM base_models"))).all()
    live: dict[tuple[str, str], int] = {}
    for _, tenant, project, model_id, destination, status, updated in rows:
        # A push copies a model of its own tenant, one its project (or the whole tenant) sees.
        assert any(t == tenant and m == model_id and p in ("", project) for t, p, m in models), (tenant, model_id)
        if status == PUSHING and clock() - updated <= STALE:
            live[(tenant, destination)] = live.get((tenant, destination), 0) + 1
    assert all(n == 1 for n in live.values()), live
    for who in CALLERS:
        listed = await pushes.list_model_pushes(who, pb.ListModelPushesRequest())
        allowed = {r[0] for r in rows if r[1] == who.tenant_id and r[2] in ("", who.project_id)}
        assert {p.id for p in listed.data} == allowed, (who, listed.data)
        for push_id, tenant, project, *_ in rows:
            try:
                await pushes.get_model_push(who, pb.GetModelPushRequest(id=push_id))
                seen = True
            except NotFound:
                seen = False
            assert seen == (tenant == who.tenant_id and project in ("", who.project_id)), (who, push_id)


def _service(db: Any, tmp_path: Path) -> tuple[Api, PushService, HeldPusher, FakeClock]:
    clock = FakeClock()
    ctx = ServiceContext(db=db, objects=LocalStore(tmp_path / "objects"), loading=TEST_LOADING, clock=clock)
    pusher = HeldPusher()
    return Api(ctx), PushService(ctx, pusher, at_once=64), pusher, clock


async def test_the_events_do_what_they_say(tmp_path: Path, fresh: Fresh) -> None:  # noqa: F811
    """The harness is not vacuous: pushes start, refuse a second model to a busy tag, end, and walls hold."""
    db = await fresh()
    try:
        api, pushes, pusher, clock = _service(db, tmp_path)
        writer_a1 = CALLERS.index(Identity("t-a", "org", "p1", Role.WRITER))
        for op in [("model", "t-a", "", "m1"), ("model", "t-a", "", "m2"), ("push", writer_a1, "m1", DESTINATIONS[0])]:
            await _run(api, pushes, pusher, clock, op)
        with contextlib.suppress(ServiceError):
            await _run(api, pushes, pusher, clock, ("push", writer_a1, "m2", DESTINATIONS[0]))
            raise AssertionError("a second model was pushed to a busy tag")
        await _run(api, pushes, pusher, clock, ("end", 0, True))
        await _run(api, pushes, pusher, clock, ("push", writer_a1, "m2", DESTINATIONS[0]))  # free again
        assert len(pusher.held) == 2
        await _check(api, pushes, clock)
        await pushes.close()
    finally:
        await db.close()


# Two models of one tenant to one tag, from two projects: the case the busy-tag rule is for, always tried.
CONTENDED = [("model", "t-a", "", "m1"), ("model", "t-a", "", "m2"), ("push", 0, "m1", DESTINATIONS[0]),
             ("push", 1, "m2", DESTINATIONS[0]), ("silence",), ("push", 1, "m2", DESTINATIONS[0])]  # fmt: skip


@SETTINGS
@given(ops=_ops())
@example(ops=CONTENDED)
def test_no_order_of_events_lets_a_push_cross_a_wall_or_share_a_tag(
    ops: list[tuple[Any, ...]],
    fresh: Fresh,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    async def run() -> None:
        db = await fresh()
        try:
            api, pushes, pusher, clock = _service(db, tmp_path)
            for op in ops:
                with contextlib.suppress(ServiceError):  # refused, with a reason: nothing changed
                    await _run(api, pushes, pusher, clock, op)
                await _check(api, pushes, clock)  # after every event: a later silence would hide two live pushes
            await pushes.close()
        finally:
            await db.close()

    asyncio.run(run())


async def test_a_push_that_breaks_inside_is_marked_failed_naming_the_error(
    tmp_path: Path,
    fresh: Fresh,  # noqa: F811
) -> None:
    class Broken:
        async def push(self, plan: PushPlan, report: Report) -> str:
            async with asyncio.TaskGroup() as group:
                group.create_task(asyncio.sleep(0))
                raise ValueError("a bug")

    db = await fresh()
    try:
        api, _, _, clock = _service(db, tmp_path)
        pushes = PushService(api.ctx, Broken())
        await _run(api, pushes, HeldPusher(), clock, ("model", "t-a", "", "m1"))
        writer = Identity("t-a", "org", "p1", Role.WRITER)
        push = await pushes.push_model(writer, pb.PushModelRequest(id="m1", destination=DESTINATIONS[0]))
        await asyncio.gather(*pushes.running)
        failed = await pushes.get_model_push(writer, pb.GetModelPushRequest(id=push.id))
        assert failed.status == pb.PushStatus.FAILED
        assert failed.failure_reason == "internal error (ValueError); see the server's log"
    finally:
        await db.close()
