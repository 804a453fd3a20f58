"""Loading-status updates from loaders: progress, success, failure, release; fenced by the claim's attempt."""

from __future__ import annotations

from model_manager.core import metrics
from model_manager.core.errors import InvalidArgument
from model_manager.core.identity import Identity
from model_manager.proto.llmariner.models.server.v1 import (
    LoadingProgress,
    UpdateBaseModelLoadingStatusRequest,
    UpdateBaseModelLoadingStatusResponse,
    UpdateModelLoadingStatusRequest,
    UpdateModelLoadingStatusResponse,
)
from model_manager.service import quota, tenancy, validate
from model_manager.service.context import ServiceContext
from model_manager.service.convert import stored_files, stored_metadata
from model_manager.store import catalog, loading
from model_manager.store.database import Conn
from model_manager.store.records import Kind, LoadingStatus, ModelColumns, ModelRecord

MAX_RETRY_DELAY = 600.0  # seconds; delays double from loading.retryDelay up to this

_Request = UpdateBaseModelLoadingStatusRequest | UpdateModelLoadingStatusRequest


class LoadingStatusService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def update_base_model_loading_status(
        self, who: Identity, req: UpdateBaseModelLoadingStatusRequest
    ) -> UpdateBaseModelLoadingStatusResponse:
        await self._update(who, Kind.BASE, req, req.project_id)
        return UpdateBaseModelLoadingStatusResponse()

    async def update_model_loading_status(
        self, who: Identity, req: UpdateModelLoadingStatusRequest
    ) -> UpdateModelLoadingStatusResponse:
        await self._update(who, Kind.FINE_TUNED, req, None)
        return UpdateModelLoadingStatusResponse()

    def _outcome(self, kind: Kind, req: _Request) -> ModelColumns | None:
        """Column values for this update; None for a base-model success (the requested row goes away)."""
        now = self.ctx.clock()
        ended: ModelColumns = {"lease_holder": None, "lease_expires_at": None, "updated_at": int(now)}
        if req.failure is not None:
            if not req.failure.reason:
                raise InvalidArgument("failure.reason is required")
            # The last progress text ("about 3 h left") would read as if the load were still going.
            return {
                "loading_status": LoadingStatus.FAILED,
                "loading_failure_reason": req.failure.reason,
                "loading_status_message": "",
                "attempt_log": loading.logged_failure(kind, req.failure.reason, now),
                **ended,
            }
        if req.success is not None:
            if kind is Kind.BASE:
                return None
            reported: ModelColumns = (
                {"files": stored_files(req.files), **stored_metadata(req.metadata)}
                if isinstance(req, UpdateModelLoadingStatusRequest)
                else {"files": "[]"}
            )
            return {
                "loading_status": LoadingStatus.SUCCEEDED,
                "loading_status_message": req.status_message,
                **reported,
                **ended,
            }
        if req.release:
            return {
                "loading_status": LoadingStatus.REQUESTED,
                "loading_status_message": req.status_message or "returned by its loader; waiting for a loader",
                **ended,
                **_NO_PROGRESS,
            }
        # A progress report: show the message (and the numbers, from loaders that send them); renew the lease.
        return {
            "loading_status_message": req.status_message,
            "lease_expires_at": now + self.ctx.lease_seconds,
            "updated_at": int(now),
            **(_progress(req.progress) if req.progress is not None else ModelColumns()),
        }

    def _retry_later(self, rec: ModelRecord, reason: str) -> ModelColumns:
        """A failure a later attempt may fix: back to REQUESTED after a growing delay, or FAILED when out of
        attempts (counted from the claims, which leases count too, since the request or the last retry)."""
        now = self.ctx.clock()
        ended: ModelColumns = {
            "lease_holder": None,
            "lease_expires_at": None,
            "updated_at": int(now),
            "attempt_log": loading.logged_failure(rec.kind, reason, now),
        }
        used = rec.attempts_used
        if used >= self.ctx.max_attempts:
            return {
                "loading_status": LoadingStatus.FAILED,
                "loading_failure_reason": f"{reason} (gave up after {used} attempts)",
                "loading_status_message": "",
                **ended,
            }
        delay = min(self.ctx.loading.retry_delay * 2 ** (used - 1), MAX_RETRY_DELAY)
        return {
            "loading_status": LoadingStatus.REQUESTED,
            "loading_status_message": f"attempt {used} failed: {reason}; trying again in {delay:.0f} s",
            "claimable_at": now + delay,
            **ended,
            **_NO_PROGRESS,
        }

    async def _update(self, who: Identity, kind: Kind, req: _Request, project_id: str | None) -> None:
        outcome = await self._apply(who, kind, req, project_id)
        if outcome:
            metrics.LOADS.labels(outcome).inc()

    async def _apply(self, who: Identity, kind: Kind, req: _Request, project_id: str | None) -> str:
        """Apply the update; return the load's outcome for the metrics ("" for a progress report)."""
        validate.check_id(req.id)
        if isinstance(req, UpdateModelLoadingStatusRequest):
            tenancy.check_files(req.files)
        async with self.ctx.db.transaction() as conn:
            if req.retryable_failure:
                rec = await loading.find_loading_target(conn, kind, who.tenant_id, req.id, project_id)
                loading.check_loading(rec, req.attempt)
                retry = self._retry_later(rec, req.retryable_failure)
                await loading.transition(conn, kind, who.tenant_id, req.id, project_id, rec.attempt, retry)
                return "retried" if retry["loading_status"] == LoadingStatus.REQUESTED else "failed"
            values = self._outcome(kind, req)
            if values is not None and isinstance(req, UpdateBaseModelLoadingStatusRequest) and req.content_path:
                values.update(await self._content(conn, who, req))
            if values is not None and req.progress is not None and self.ctx.loading.max_bytes_per_tenant:
                await self._check_quota(conn, who, kind, req, project_id)
            if values is not None:
                await loading.transition(conn, kind, who.tenant_id, req.id, project_id, req.attempt, values)
                return _OUTCOMES.get(values.get("loading_status", -1), "")
            # Base-model success. If the loader created the model under its converted id, the requested row is
            # still LOADING and goes away; if it completed the requested row itself, that row is SUCCEEDED already.
            rec = await loading.find_loading_target(conn, kind, who.tenant_id, req.id, project_id)
            if rec.loading_status == LoadingStatus.SUCCEEDED:
                await catalog.release_registered_by(conn, rec)
                return "succeeded"
            loading.check_loading(rec, req.attempt)
            await catalog.release_registered_by(conn, rec)
            await catalog.delete_model(conn, rec)
            return "succeeded"

    async def _check_quota(self, conn: Conn, who: Identity, kind: Kind, req: _Request, project_id: str | None) -> None:
        """A load learns its size from its source's listing (before its first byte); a size the request did not
        know, or one larger than it knew, is held against the quota then, and a refusal fails the load."""
        assert req.progress is not None
        rec = await loading.find_loading_target(conn, kind, who.tenant_id, req.id, project_id)
        if req.progress.bytes_total > rec.progress_bytes_total:
            counted = rec.progress_bytes_total if not rec.files else 0
            await quota.check(self.ctx, conn, who.tenant_id, req.progress.bytes_total, counted)

    async def _content(self, conn: Conn, who: Identity, req: UpdateBaseModelLoadingStatusRequest) -> ModelColumns:
        """Where the load writes, recorded on the loading row: deleting another model of the same content keeps
        these files, and deleting this one removes what its load left there (unless another model uses them)."""
        await tenancy.check_path(self.ctx, conn, who, req.content_path, "content_path")
        validate.check_content_key(req.content_key)
        return {"content_path": req.content_path, "content_key": req.content_key}


# A model given back starts its next attempt from nothing.
_NO_PROGRESS: ModelColumns = {
    "progress_bytes_done": 0,
    "progress_bytes_total": 0,
    "progress_files_done": 0,
    "progress_files_total": 0,
}


def _progress(p: LoadingProgress) -> ModelColumns:
    for name in ("bytes_done", "bytes_total", "files_done", "files_total"):
        if getattr(p, name) < 0:
            raise InvalidArgument(f"progress.{name} must not be negative, got {getattr(p, name)}")
    return {
        "progress_bytes_done": p.bytes_done,
        "progress_bytes_total": p.bytes_total,
        "progress_files_done": p.files_done,
        "progress_files_total": p.files_total,
    }


# What a status update ends a load with, as the loads metric names it (a release gives the model back unfinished).
_OUTCOMES: dict[int, str] = {
    LoadingStatus.SUCCEEDED: "succeeded",
    LoadingStatus.FAILED: "failed",
    LoadingStatus.REQUESTED: "released",
}
