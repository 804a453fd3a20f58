"""Pushing loaded models to OCI registries (PushModel, GetModelPush).

Rules:
- writers push, models they see (an alias names its model); only a loaded model with recorded files;
- the destination is `oci://HOST[:PORT]/REPOSITORY[:TAG]` (a tag: a push names what it moves);
- a push runs in the background on the server that accepted it, at most `oci.pushesAtOnce` at a time; its row
  says how far it got. A second request for the same model and destination while one runs answers that one; for
  another model, FailedPrecondition (two pushes would race for the tag);
- a push whose server stopped (its row not touched for `STALE` seconds) reads as FAILED, and pushing again goes on
  from what the registry holds (blobs it has are not sent again);
- shutting down fails the running pushes with a reason that says so, before the process exits.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets

from model_manager.core import metrics
from model_manager.core.aio import first_error
from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound
from model_manager.core.identity import Identity, Role
from model_manager.core.oci_ref import OciRef, parse_oci
from model_manager.core.push import ModelFacts, Pusher, PushFailed, PushPlan, PushProgress
from model_manager.proto.llmariner.models.server.v1 import (
    GetModelPushRequest,
    ListModelPushesRequest,
    ListModelPushesResponse,
    ModelFormat,
    ModelPush,
    PushModelRequest,
    PushStatus,
)
from model_manager.service import access, validate
from model_manager.service.context import ServiceContext
from model_manager.service.convert import metadata_fields
from model_manager.service.lookup import find_visible
from model_manager.store import pushes
from model_manager.store.pushes import PushRow
from model_manager.store.records import ModelRecord

log = logging.getLogger(__name__)

STALE = 60  # seconds without a word from the server running a push: it stopped
MAX_LISTED = 100
HEARTBEAT = 10.0  # seconds between a running push's touches of its row, progress or not
PUSHING, SUCCEEDED, FAILED = int(PushStatus.PUSHING), int(PushStatus.SUCCEEDED), int(PushStatus.FAILED)
INTERRUPTED = (
    "interrupted: the server running the push stopped; push again to go on (blobs the registry has are not sent again)"
)
_FORMATS = {ModelFormat.GGUF: "gguf", ModelFormat.HUGGING_FACE: "safetensors", ModelFormat.OLLAMA: "gguf"}


def _message(row: PushRow, now: int) -> ModelPush:
    status, reason = row.status, row.failure_reason
    if status == PUSHING and now - row.updated_at > STALE:
        status, reason = FAILED, INTERRUPTED
    return ModelPush(
        id=row.push_id,
        model_id=row.model_id,
        destination=row.destination,
        status=PushStatus(status),
        bytes_total=row.bytes_total,
        bytes_done=row.bytes_done,
        bytes_skipped=row.bytes_skipped,
        files_total=row.files_total,
        files_done=row.files_done,
        manifest_digest=row.manifest_digest,
        failure_reason=reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def destination(value: str) -> OciRef:
    ref = validate.parse_oci(value, "destination", scheme=True)
    if not ref.tag:
        raise InvalidArgument(f"destination {value[:120]!r}: a push names a tag (…:TAG), not a digest")
    return ref


def facts(rec: ModelRecord) -> ModelFacts:
    meta = metadata_fields(rec.metadata) if rec.metadata else {}
    created = datetime.datetime.fromtimestamp(rec.created_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    weights = next((_FORMATS[ModelFormat(f)] for f in rec.formats if ModelFormat(f) in _FORMATS), "")
    if weights == "safetensors" and not any(f.path.endswith(".safetensors") for f in rec.files):
        weights = "pytorch"
    return ModelFacts(
        name=rec.model_id,
        created_at=created,
        revision=rec.revision,
        architecture=str(meta.get("architecture", "")),
        format=weights,
        parameters=int(meta.get("parameter_count", 0)),
        dtype=str(meta.get("dtype", "")),
        quantization=str(meta.get("quantization", "")),
        license=str(meta.get("license", "")),
    )


class PushService:
    def __init__(self, ctx: ServiceContext, pusher: Pusher | None, at_once: int = 2) -> None:
        self.ctx = ctx
        self.pusher = pusher
        self.gate = asyncio.Semaphore(at_once)
        self.running: set[asyncio.Task[None]] = set()

    async def push_model(self, who: Identity, req: PushModelRequest) -> ModelPush:
        access.require(who, Role.WRITER, "pushing models")
        ref = validate.check_registry(destination(req.destination), self.ctx.allowed_registries, "destination")
        if not req.id:
            raise InvalidArgument("id is required")
        if self.pusher is None:
            raise FailedPrecondition("this server does not push models (it has no object store)")
        now = self.ctx.now()
        async with self.ctx.db.transaction() as conn:
            rec = await find_visible(conn, who, req.id, include_loading=True, project_id=who.project_id)
            if not rec.is_loaded:
                raise FailedPrecondition(f'model "{rec.model_id}" is not loaded yet: push it once its load succeeded')
            if not rec.path or not rec.files:
                raise FailedPrecondition(f'model "{rec.model_id}" has no recorded files to push')
            for running in await pushes.running_to(conn, who.tenant_id, str(ref), PUSHING):
                if now - running.updated_at > STALE:
                    await pushes.change(conn, running.push_id, PUSHING, status=FAILED, failure_reason=INTERRUPTED)
                elif running.model_id == rec.model_id:
                    return _message(running, now)
                else:
                    raise FailedPrecondition(
                        f"{ref} is being pushed model {running.model_id!r} by push {running.push_id}: wait for it"
                    )
            earlier = await pushes.last_destination(conn, who.tenant_id, rec.model_id, ref.registry, SUCCEEDED)
            row = PushRow(
                push_id=f"push-{secrets.token_hex(8)}",
                tenant_id=who.tenant_id,
                project_id=who.project_id if rec.project_id else "",
                model_id=rec.model_id,
                destination=str(ref),
                status=PUSHING,
                bytes_total=sum(f.size for f in rec.files),
                bytes_done=0,
                bytes_skipped=0,
                files_total=len(rec.files),
                files_done=0,
                manifest_digest="",
                failure_reason="",
                created_at=now,
                updated_at=now,
            )
            await pushes.insert_push(conn, row)
        # Blobs mount from the repository of an earlier push to this registry (not from the one pushed to now).
        mount_from = parse_oci(earlier).repository if earlier else ""
        plan = PushPlan(ref, rec.path, rec.files, facts(rec), mount_from if mount_from != ref.repository else "")
        task = asyncio.create_task(self._run(row.push_id, plan), name=f"push {row.push_id}")
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return _message(row, now)

    async def get_model_push(self, who: Identity, req: GetModelPushRequest) -> ModelPush:
        access.require(who, Role.READER, "reading pushes")
        async with self.ctx.db.reading() as conn:
            row = await pushes.find(conn, who.tenant_id, req.id) if req.id else None
        if row is None or row.project_id not in ("", who.project_id):
            raise NotFound(f'push "{req.id}" not found')
        return _message(row, self.ctx.now())

    async def list_model_pushes(self, who: Identity, req: ListModelPushesRequest) -> ListModelPushesResponse:
        access.require(who, Role.READER, "reading pushes")
        if not 0 <= req.limit <= MAX_LISTED:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LISTED} (0: {MAX_LISTED})")
        async with self.ctx.db.reading() as conn:
            rows = await pushes.visible(conn, who.tenant_id, who.project_id, req.model_id, req.limit or MAX_LISTED)
        now = self.ctx.now()
        return ListModelPushesResponse(object="list", data=[_message(r, now) for r in rows])

    async def _set(self, push_id: str, **values: object) -> bool:
        async with self.ctx.db.transaction() as conn:
            return await pushes.change(conn, push_id, PUSHING, updated_at=self.ctx.now(), **values)

    async def _record(self, push_id: str, **values: object) -> None:
        """Write the push's row without letting a failed write end the push or the task: a database outage is
        logged, and a row left unwritten for STALE seconds reads as stopped."""
        try:
            await self._set(push_id, **values)
        except Exception:
            log.warning(
                "push %s: could not record %s", push_id, ", ".join(sorted(values)) or "it is alive", exc_info=True
            )

    async def _run(self, push_id: str, plan: PushPlan) -> None:
        assert self.pusher is not None
        beat = asyncio.create_task(self._heartbeat(push_id))
        sent = 0

        async def report(p: PushProgress) -> None:
            nonlocal sent
            metrics.PUSHED_BYTES.inc(max(p.bytes_done - p.bytes_skipped - sent, 0))
            sent = max(sent, p.bytes_done - p.bytes_skipped)
            await self._record(push_id, bytes_done=p.bytes_done, bytes_skipped=p.bytes_skipped, files_done=p.files_done)

        try:
            async with self.gate:
                digest = await self.pusher.push(plan, report)
            metrics.PUSHES.labels("succeeded").inc()
            log.info("pushed %s to %s@%s", plan.facts.name, plan.destination, digest)
            await self._record(push_id, status=SUCCEEDED, manifest_digest=digest, files_done=len(plan.files))
        except asyncio.CancelledError:
            metrics.PUSHES.labels("failed").inc()
            await asyncio.shield(self._record(push_id, status=FAILED, failure_reason=_SHUTDOWN))
            raise
        except PushFailed as e:
            log.warning("push %s of %s to %s failed: %s", push_id, plan.facts.name, plan.destination, e.message)
            metrics.PUSHES.labels("failed").inc()
            await self._record(push_id, status=FAILED, failure_reason=e.message)
        except Exception as e:
            log.exception("push %s of %s to %s failed", push_id, plan.facts.name, plan.destination)
            metrics.PUSHES.labels("failed").inc()
            cause = first_error(e) if isinstance(e, BaseExceptionGroup) else e
            reason = f"internal error ({type(cause).__name__}); see the server's log"
            await self._record(push_id, status=FAILED, failure_reason=reason)
        finally:
            beat.cancel()

    async def _heartbeat(self, push_id: str) -> None:
        """Touch the row while the push runs, so that readers can tell a slow push from a stopped one."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            await self._record(push_id)

    async def close(self) -> None:
        """Stop the running pushes (shutdown): each is marked FAILED, saying how to go on."""
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)


_SHUTDOWN = "interrupted: the server shut down; push again to go on (blobs the registry has are not sent again)"
