"""API keys and roles: keys stored only as hashes, the authenticator's answers, revocation, what each role may do."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from model_manager.config import ConfigError, parse_config
from model_manager.core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from model_manager.core.identity import DEFAULT_IDENTITY, Identity, Role
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.auth import KEY_INVALID, KEY_REQUIRED, Api, Authenticator, Credentials
from model_manager.service.context import ServiceContext
from model_manager.service.keys import KeyScope, KeyService, parse
from model_manager.store.tables import api_keys
from tests.conftest import FakeClock
from tests.helpers import HF
from tests.helpers import Api as Services


def bearer(key: str) -> Credentials:
    return Credentials(f"Bearer {key}")


@pytest.fixture
def keys(ctx: ServiceContext) -> KeyService:
    return KeyService(ctx.db)


@pytest.fixture
def auth(ctx: ServiceContext, clock: FakeClock) -> Authenticator:
    return Authenticator(ctx.db, enabled=True, cache_seconds=5.0, clock=clock)


async def test_a_key_is_random_shown_once_and_stored_only_as_a_hash(ctx: ServiceContext, keys: KeyService) -> None:
    key, record = await keys.create(KeyScope("t1", Role.WRITER, "o1", "p1"))
    other, _ = await keys.create(KeyScope("t1", Role.WRITER, "o1", "p1"))
    parsed = parse(key)
    assert parsed is not None and parsed.key_id == record.key_id
    assert len(parsed.secret) >= 43 and key != other  # 256 random bits each
    async with ctx.db.reading() as conn:
        rows = [dict(r._mapping) for r in (await conn.execute(select(api_keys))).all()]
    stored = repr(rows)
    assert parsed.secret not in stored and key not in stored
    assert record.secret_sha256 in stored


async def test_key_scopes_are_checked(keys: KeyService) -> None:
    with pytest.raises(InvalidArgument, match="worker key serves a whole tenant"):
        await keys.create(KeyScope("t1", Role.WORKER, project_id="p1"))
    with pytest.raises(InvalidArgument, match="cluster is only for worker keys"):
        await keys.create(KeyScope("t1", Role.READER, "o", "p", cluster="east"))
    with pytest.raises(InvalidArgument, match="project is required"):
        await keys.create(KeyScope("t1", Role.READER, "o", ""))
    with pytest.raises(InvalidArgument, match="tenant 'a/b' must be letters, digits"):
        await keys.create(KeyScope("a/b", Role.WORKER))  # tenant "a" project "b" would share its directory
    with pytest.raises(InvalidArgument, match="project 'a b' must be letters"):
        await keys.create(KeyScope("t1", Role.READER, "o", "a b"))
    with pytest.raises(InvalidArgument, match="tenant must be at most 64"):
        await keys.create(KeyScope("t" * 65, Role.WORKER))
    assert await keys.list() == []  # nothing half-made


async def test_the_key_decides_who_calls(keys: KeyService, auth: Authenticator) -> None:
    key, record = await keys.create(KeyScope("t1", Role.READER, "o1", "p1"))
    who = await auth.authenticate(bearer(key), Api.PUBLIC)
    assert who == Identity("t1", "o1", "p1", Role.READER, record.key_id)
    # Headers may repeat the key's scope (the OpenAI SDK sends them when configured) but never change it.
    same = Credentials(f"bearer {key}", organization="o1", project="p1")
    assert await auth.authenticate(same, Api.PUBLIC) == who
    for creds in (Credentials(f"Bearer {key}", project="p2"), Credentials(f"Bearer {key}", organization="o2")):
        with pytest.raises(PermissionDenied, match="it cannot act in"):
            await auth.authenticate(creds, Api.PUBLIC)


async def test_refusals_say_which_never_why(keys: KeyService, auth: Authenticator) -> None:
    key, _ = await keys.create(KeyScope("t1", Role.WRITER, "o1", "p1"))
    parsed = parse(key)
    assert parsed is not None
    for missing in (Credentials(None), Credentials(""), Credentials(key), Credentials("Basic abc")):
        with pytest.raises(Unauthenticated) as e:
            await auth.authenticate(missing, Api.PUBLIC)
        assert e.value.message == KEY_REQUIRED
    wrong_secret = f"mmk_{parsed.key_id}_{'A' * 43}"
    unknown_id = f"mmk_{'0' * 12}_{parsed.secret}"
    for bad in ("garbage", key + "x", wrong_secret, unknown_id):
        with pytest.raises(Unauthenticated) as e:
            await auth.authenticate(bearer(bad), Api.PUBLIC)
        assert e.value.message == KEY_INVALID  # the same words whatever was wrong


async def test_keys_work_only_on_their_own_api(keys: KeyService, auth: Authenticator) -> None:
    worker, _ = await keys.create(KeyScope("t1", Role.WORKER, cluster="east"))
    admin, _ = await keys.create(KeyScope("t1", Role.ADMIN, "o1", "p1"))
    assert (await auth.authenticate(bearer(worker), Api.WORKER)).tenant_id == "t1"
    with pytest.raises(PermissionDenied, match="worker key cannot call the public API"):
        await auth.authenticate(bearer(worker), Api.PUBLIC)
    with pytest.raises(PermissionDenied, match="needs a worker key"):
        await auth.authenticate(bearer(admin), Api.WORKER)


async def test_revocation_takes_effect_within_the_cache_time(
    ctx: ServiceContext, keys: KeyService, clock: FakeClock
) -> None:
    key, record = await keys.create(KeyScope("t1", Role.READER, "o1", "p1"))
    replica_a = Authenticator(ctx.db, enabled=True, cache_seconds=5.0, clock=clock)
    replica_b = Authenticator(ctx.db, enabled=True, cache_seconds=5.0, clock=clock)
    await replica_a.authenticate(bearer(key), Api.PUBLIC)  # cached on a
    await keys.revoke(record.key_id)
    with pytest.raises(Unauthenticated):  # b never saw it: refused at once
        await replica_b.authenticate(bearer(key), Api.PUBLIC)
    clock.advance(4)
    await replica_a.authenticate(bearer(key), Api.PUBLIC)  # a trusts its lookup a little longer
    clock.advance(2)
    with pytest.raises(Unauthenticated):
        await replica_a.authenticate(bearer(key), Api.PUBLIC)
    first = (await keys.list("t1"))[0].revoked_at
    assert first is not None and (await keys.revoke(record.key_id)).revoked_at == first  # revoking again: no change
    with pytest.raises(NotFound):
        await keys.revoke("000000000000")


async def test_last_use_is_recorded(keys: KeyService, auth: Authenticator) -> None:
    key, record = await keys.create(KeyScope("t1", Role.READER, "o1", "p1"))
    assert record.last_used_at is None
    await auth.authenticate(bearer(key), Api.PUBLIC)
    (listed,) = await keys.list("t1")
    assert listed.last_used_at is not None


async def test_with_auth_off_everyone_is_the_default_identity(ctx: ServiceContext) -> None:
    off = Authenticator(ctx.db, enabled=False)
    assert await off.authenticate(Credentials(None, project="elsewhere"), Api.PUBLIC) == DEFAULT_IDENTITY
    assert (await off.authenticate(Credentials("Bearer junk"), Api.WORKER)).role is Role.WORKER


def _replicas(model_id: str) -> pb.UpdateModelRequest:
    config = pb.ModelConfig(runtime_config=pb.ModelConfigRuntimeConfig(replicas=2))
    mask = FieldMask(paths=["config.runtime_config.replicas"])
    return pb.UpdateModelRequest(model=pb.Model(id=model_id, config=config), update_mask=mask)


def _as(role: Role, project: str = "p1") -> Identity:
    return Identity("t1", "o1", project, role)


async def test_what_each_role_may_do(ctx: ServiceContext) -> None:
    api = Services(replace(ctx, auth_enabled=True))
    reader, writer, admin = _as(Role.READER), _as(Role.WRITER), _as(Role.ADMIN)
    global_req = pb.CreateModelRequest(id="org/global", source_repository=HF)
    scoped_req = pb.CreateModelRequest(id="org/scoped", source_repository=HF, is_project_scoped=True)

    with pytest.raises(PermissionDenied, match="creating models needs the writer role; this key has the reader"):
        await api.models.create_model(reader, scoped_req)
    with pytest.raises(PermissionDenied, match=r"creating a global base model .* needs the admin role"):
        await api.models.create_model(writer, global_req)
    await api.models.create_model(writer, scoped_req)
    await api.models.create_model(admin, global_req)

    for who in (reader, writer, admin):
        listed = await api.list(who, include_loading_models=True)
        assert sorted(m.id for m in listed.data) == ["org/global", "org/scoped"]
        assert (await api.get("org/global", who)).id == "org/global"

    for call in (
        lambda who, i: api.models.delete_model(who, pb.DeleteModelRequest(id=i)),
        lambda who, i: api.models.update_model(who, _replicas(i)),
        lambda who, i: api.models.activate_model(who, pb.ActivateModelRequest(id=i)),
        lambda who, i: api.models.deactivate_model(who, pb.DeactivateModelRequest(id=i)),
    ):
        with pytest.raises(PermissionDenied, match="needs the writer role"):
            await call(reader, "org/scoped")
    with pytest.raises(PermissionDenied, match="deleting a global base model needs the admin role"):
        await api.models.delete_model(writer, pb.DeleteModelRequest(id="org/global"))
    with pytest.raises(PermissionDenied, match="updating a global base model needs the admin role"):
        await api.models.update_model(writer, _replicas("org/global"))
    await api.models.update_model(writer, _replicas("org/scoped"))
    await api.models.delete_model(writer, pb.DeleteModelRequest(id="org/scoped"))
    await api.models.delete_model(admin, pb.DeleteModelRequest(id="org/global"))
    assert (await api.list(admin, include_loading_models=True)).data == []

    # A worker identity has no public rights, whatever reaches the service.
    with pytest.raises(PermissionDenied):
        await api.list(Identity("t1", "", "", Role.WORKER))


async def test_the_in_process_loader_runs_as_its_keys_tenant(
    ctx: ServiceContext, keys: KeyService, auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_manager.app import REGISTRATION_KEY_ENV, _in_process_loader_identity

    on = parse_config({"auth": {"enable": True}})
    assert (await _in_process_loader_identity(on, auth)).tenant_id == DEFAULT_IDENTITY.tenant_id  # no key set
    worker, _ = await keys.create(KeyScope("t9", Role.WORKER))
    monkeypatch.setenv(REGISTRATION_KEY_ENV, worker)
    assert (await _in_process_loader_identity(on, auth)).tenant_id == "t9"
    assert (await _in_process_loader_identity(parse_config({}), auth)).tenant_id == DEFAULT_IDENTITY.tenant_id
    reader, _ = await keys.create(KeyScope("t9", Role.READER, "o", "p"))
    monkeypatch.setenv(REGISTRATION_KEY_ENV, reader)
    with pytest.raises(ConfigError, match="LLMO_CLUSTER_REGISTRATION_KEY: the worker API needs a worker key"):
        await _in_process_loader_identity(on, auth)
