"""Claims, loading-status updates and leases, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from model_manager.api.wire import JSON, PROTO
from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.cache import ResponseCache
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from model_manager.store import catalog
from model_manager.store.records import LoadingStatus
from tests.conftest import FakeClock
from tests.helpers import WHO, WORKER, Api

OK = pb.UpdateBaseModelLoadingStatusRequestSuccess()


def _fail(reason: str) -> pb.UpdateBaseModelLoadingStatusRequestFailure:
    return pb.UpdateBaseModelLoadingStatusRequestFailure(reason=reason)


async def test_acquire_takes_the_oldest_requested_model_once(api: Api, clock: FakeClock) -> None:
    assert await api.acquire_base() == pb.AcquireUnloadedBaseModelResponse()
    await api.request_base("org/first")
    await api.request_base("org/second")
    first = await api.acquire_base()
    assert (first.base_model_id, first.source_repository, first.attempt) == (
        "org/first",
        pb.SourceRepository.HUGGING_FACE,
        1,
    )
    assert (await api.get("org/first")).loading_status == pb.ModelLoadingStatus.LOADING
    assert (await api.acquire_base()).base_model_id == "org/second"
    assert (await api.acquire_base()).base_model_id == ""


async def test_progress_sets_the_message(api: Api) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    await api.base_status("org/name", status_message="downloaded 1 GiB of 2 GiB", attempt=claim.attempt)
    assert (await api.get("org/name")).loading_status_message == "downloaded 1 GiB of 2 GiB"


async def test_progress_numbers_are_kept_for_every_replica_and_cleared_when_given_back(
    api: Api, ctx: ServiceContext
) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    numbers = pb.LoadingProgress(bytes_done=3 << 30, bytes_total=8 << 30, files_done=2, files_total=5)
    await api.base_status("org/name", status_message="downloaded", progress=numbers, attempt=claim.attempt)
    # Another server replica (its own service and cache, the same database) answers the same numbers.
    other = ModelsService(replace(ctx, cache=ResponseCache()))
    got = pb.Model.parse(
        await other.get_model_encoded(WHO, pb.GetModelRequest(id="org/name", include_loading_model=True), PROTO)
    )
    assert got.loading_progress == numbers
    body = json.loads(
        await other.get_model_encoded(WHO, pb.GetModelRequest(id="org/name", include_loading_model=True), JSON)
    )
    assert body["loading_progress"] == {
        "bytes_done": 3 << 30,
        "bytes_total": 8 << 30,
        "files_done": 2,
        "files_total": 5,
    }
    # A report without numbers (an older loader) keeps the last ones; a negative number is refused.
    await api.base_status("org/name", status_message="still going", attempt=claim.attempt)
    assert (await api.get("org/name")).loading_progress == numbers
    with pytest.raises(InvalidArgument, match=r"progress\.bytes_done must not be negative"):
        bad = pb.LoadingProgress(bytes_done=-1, bytes_total=1)
        await api.base_status("org/name", status_message="x", progress=bad, attempt=claim.attempt)
    await api.base_status("org/name", release=True, attempt=claim.attempt)
    assert (await api.get("org/name")).loading_progress is None  # the next attempt starts from nothing


async def test_success_under_the_converted_id_removes_the_requested_row(api: Api) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    await api.loaded_base("org-name")
    await api.base_status("org/name", success=OK, attempt=claim.attempt)
    with pytest.raises(NotFound):
        await api.get("org/name")
    assert (await api.get("org-name", loading=False)).loading_status == pb.ModelLoadingStatus.SUCCEEDED


async def test_failure_needs_a_reason_and_marks_failed(api: Api) -> None:
    await api.request_base("org/name")
    attempt = (await api.acquire_base()).attempt
    with pytest.raises(InvalidArgument, match="reason"):
        await api.base_status("org/name", failure=_fail(""), attempt=attempt)
    await api.base_status(
        "org/name", status_message="downloaded 1.0 GiB of 9.0 GiB, about 46624.4 h left", attempt=attempt
    )
    await api.base_status("org/name", failure=_fail("repo not found: org/name"), attempt=attempt)
    got = await api.get("org/name")
    assert (got.loading_status, got.loading_failure_reason) == (
        pb.ModelLoadingStatus.FAILED,
        "repo not found: org/name",
    )
    assert got.loading_status_message == ""  # no stale progress on a failed model


async def test_updates_to_models_not_loading_are_refused(api: Api) -> None:
    await api.request_base("org/name")
    with pytest.raises(FailedPrecondition, match="not loading"):
        await api.base_status("org/name", status_message="x")
    with pytest.raises(NotFound):
        await api.base_status("org/other", status_message="x")
    with pytest.raises(InvalidArgument, match="id is required"):
        await api.base_status("", status_message="x")


async def test_fine_tuned_success_and_failure(api: Api) -> None:
    await api.loaded_base("b")
    ok = await api.fine_tuned("b", "ok")
    bad = await api.fine_tuned("b", "bad")
    for _ in range(2):
        await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest())
    await api.worker.update_model_loading_status(
        WORKER, pb.UpdateModelLoadingStatusRequest(id=ok.id, success=pb.UpdateModelLoadingStatusRequestSuccess())
    )
    await api.worker.update_model_loading_status(
        WORKER,
        pb.UpdateModelLoadingStatusRequest(id=bad.id, failure=pb.UpdateModelLoadingStatusRequestFailure(reason="no")),
    )
    assert (await api.get(ok.id, loading=False)).loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert (await api.get(bad.id)).loading_failure_reason == "no"
    with pytest.raises(FailedPrecondition):
        await api.worker.update_model_loading_status(
            WORKER, pb.UpdateModelLoadingStatusRequest(id=ok.id, status_message="late")
        )


async def test_expired_lease_gives_the_model_back_and_fences_the_old_loader(api: Api, clock: FakeClock) -> None:
    await api.request_base("org/name")
    first = await api.acquire_base("loader-1")
    clock.advance(30)
    await api.base_status("org/name", status_message="halfway", attempt=first.attempt)  # renews to now+60
    clock.advance(59)
    assert (await api.acquire_base("loader-2")).base_model_id == ""  # still held
    clock.advance(11)  # expired, and past the sweep interval (a quarter of the lease, at most 10 s)
    second = await api.acquire_base("loader-2")
    assert (second.base_model_id, second.attempt) == ("org/name", 2)
    # The first loader lost its lease: its updates are refused, so it cannot overwrite the new attempt.
    with pytest.raises(FailedPrecondition, match="stale"):
        await api.base_status("org/name", failure=_fail("late failure"), attempt=first.attempt)
    with pytest.raises(FailedPrecondition, match="stale"):
        await api.base_status("org/name", success=OK, attempt=first.attempt)
    # So is an update without an attempt: the model was claimed under a lease, and only its claim may update it.
    with pytest.raises(FailedPrecondition, match="claimed under a lease"):
        await api.base_status("org/name", failure=_fail("forged"), attempt=0)
    assert (await api.get("org/name")).loading_status == pb.ModelLoadingStatus.LOADING


async def test_a_loader_from_before_leases_updates_without_an_attempt(api: Api) -> None:
    # llmariner's own loader sends no holder when it claims and no attempt when it reports: it keeps working.
    await api.request_base("org/name")
    claim = await api.acquire_base(holder="")
    assert claim.base_model_id == "org/name"
    await api.base_status("org/name", status_message="from an old client")
    assert (await api.get("org/name")).loading_status_message == "from an old client"
    await api.base_status("org/name", failure=_fail("gave up"))
    assert (await api.get("org/name")).loading_status == pb.ModelLoadingStatus.FAILED


async def test_lease_expiry_after_max_attempts_fails_the_model(api: Api, clock: FakeClock) -> None:
    await api.request_base("org/name")
    for attempt in (1, 2, 3):
        assert (await api.acquire_base()).attempt == attempt
        clock.advance(61)
    assert (await api.acquire_base()).base_model_id == ""
    got = await api.get("org/name")
    assert got.loading_status == pb.ModelLoadingStatus.FAILED
    assert "3 attempts" in got.loading_failure_reason


async def test_release_gives_the_model_back(api: Api) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    await api.base_status("org/name", release=True, attempt=claim.attempt, status_message="loader shutting down")
    got = await api.get("org/name")
    assert (got.loading_status, got.loading_status_message) == (pb.ModelLoadingStatus.REQUESTED, "loader shutting down")
    assert (await api.acquire_base()).attempt == 2


async def test_registered_models_without_lease_are_never_expired(api: Api, clock: FakeClock) -> None:
    resp = await api.worker.register_model(
        WORKER, pb.RegisterModelRequest(base_model="b", suffix="s", organization_id="o", project_id="default")
    )
    clock.advance(10_000)
    await api.worker.acquire_unloaded_model(WORKER, pb.AcquireUnloadedModelRequest())
    async with api.ctx.db.transaction() as conn:
        rec = await catalog.find_fine_tuned(conn, WORKER.tenant_id, resp.id, published_only=False)
    assert rec is not None and rec.loading_status == LoadingStatus.LOADING


def _register(model_id: str, attempt: int, loading_model_id: str = "org/name") -> pb.CreateBaseModelRequest:
    return pb.CreateBaseModelRequest(
        id=model_id,
        path=f"models/base-models/{loading_model_id}",
        formats=[pb.ModelFormat.HUGGING_FACE],
        loading_model_id=loading_model_id,
        attempt=attempt,
    )


async def test_a_model_deleted_while_loading_gets_nothing_registered(api: Api) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/name"))
    with pytest.raises(NotFound, match="deleted while it loaded"):
        await api.worker.create_base_model(WORKER, _register("org-name", claim.attempt))
    assert (await api.list(include_loading_models=True)).data == []


async def test_deleting_a_loading_model_discards_what_its_load_registered(api: Api) -> None:
    await api.request_base("org/name")
    claim = await api.acquire_base()
    await api.worker.create_base_model(WORKER, _register("org-name", claim.attempt))
    # Deleted between the registration and the loader's success report.
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/name"))
    with pytest.raises(NotFound):
        await api.get("org-name")
    with pytest.raises(NotFound):
        await api.base_status("org/name", attempt=claim.attempt, success=OK)
    assert (await api.list(include_loading_models=True)).data == []


async def test_a_stale_claim_cannot_register(api: Api, clock: FakeClock) -> None:
    await api.request_base("org/name")
    first = await api.acquire_base()
    clock.advance(3600)
    second = await api.acquire_base("loader-2")
    with pytest.raises(FailedPrecondition, match="stale"):
        await api.worker.create_base_model(WORKER, _register("org-name", first.attempt))
    await api.worker.create_base_model(WORKER, _register("org-name", second.attempt))
    await api.base_status("org/name", attempt=second.attempt, success=OK)
    # Completed: deleting a new request of the same name later must not take the loaded model along.
    async with api.ctx.db.reading() as conn:
        rec = await catalog.find_base(conn, WHO.tenant_id, "org-name", "")
    assert rec is not None and rec.loaded_by is None
