"""Loading one model: list, detect its format, transfer, register it with the worker API.

A job either finishes or raises: LoadError (report as the failure reason), LeaseLost (another loader owns the model
now), or CancelledError (shutdown). After an outage or a shutdown what it stored stays, for the next attempt to
continue from; after a refusal (a bad file, a deleted model) it is removed first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from grpclib import GRPCError
from grpclib.const import Status

from model_manager.config import FineTunedModelSpec, LimitsConfig
from model_manager.core.files import StoredFile, from_messages, to_messages
from model_manager.core.ids import (
    content_directory,
    content_key,
    converted,
    gguf_content_key,
    gguf_id,
    static_fine_tuned_id,
    storage_directory,
)
from model_manager.loader.convert.precheck import convertible
from model_manager.loader.convert.run import Conversion
from model_manager.loader.errors import LeaseLost, PermanentError, TransientError, classify
from model_manager.loader.formats import Detected, detect
from model_manager.loader.leftovers import Owner, leave
from model_manager.loader.metadata import MetadataReader
from model_manager.loader.outcomes import Loaded
from model_manager.loader.progress import Progress
from model_manager.loader.retry import RetryPolicy, run_with_retries
from model_manager.loader.sources.base import RemoteFile, Source
from model_manager.loader.sources.factory import SourceFactory
from model_manager.loader.transfer import Transfer
from model_manager.loader.worker_api import WorkerApi
from model_manager.objectstore.base import ObjectStore
from model_manager.proto.llmariner.models.server import v1 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")
Beat = Callable[[Progress], Awaitable[None]]  # sends a progress report; raises LeaseLost when refused
# Refusals of a status update or registration that mean the claim no longer holds the model.
LOST_CLAIM = (Status.FAILED_PRECONDITION, Status.NOT_FOUND)

_ADAPTERS = {"": pb.AdapterType.UNSPECIFIED, "lora": pb.AdapterType.LORA, "qlora": pb.AdapterType.QLORA}
_QUANTIZATIONS = {"": pb.QuantizationType.UNSPECIFIED, "gguf": pb.QuantizationType.GGUF, "awq": pb.QuantizationType.AWQ}


def _owner(lost: LeaseLost) -> Owner:
    return Owner.NOBODY if lost.deleted else Owner.ANOTHER


async def _owner_now(beat: Beat | None, progress: Progress) -> Owner:
    """Whose a failed load's keys are: one more report says whether this loader still holds its claim (then
    they are nobody else's), lost it, or the model was deleted. A load without a claim (the static lists) owns its
    keys."""
    if beat is None:
        return Owner.NOBODY
    try:
        await beat(progress)
    except LeaseLost as lost:
        return _owner(lost)
    except Exception:
        return Owner.UNKNOWN
    return Owner.NOBODY


def _resumable(error: Exception) -> bool:
    """Whether a failed transfer keeps what it stored for the next attempt: after outages, not after refusals."""
    return isinstance(classify(error), TransientError)


async def _nothing() -> None:
    pass


async def _not_found(call: Awaitable[object]) -> bool:
    """Whether a worker lookup answered NOT_FOUND (any other error propagates)."""
    try:
        await call
    except GRPCError as e:
        if e.status == Status.NOT_FOUND:
            return True
        raise
    return False


async def _ignore_exists(call: Awaitable[T]) -> T | None:
    try:
        return await call
    except GRPCError as e:
        if e.status == Status.ALREADY_EXISTS:
            return None
        raise


@dataclass(frozen=True)
class _Registration:
    """What every model row a base-model load registers has in common."""

    model_id: str  # as requested (and claimed)
    repo: pb.SourceRepository
    project_id: str
    revision: str
    content_key: str
    attempt: int  # the claim's; 0 for the static list, which has no claim

    @property
    def base_id(self) -> str:
        return converted(self.model_id)


@dataclass
class Jobs:
    worker: WorkerApi
    store: ObjectStore
    sources: SourceFactory
    path_prefix: str
    base_model_path_prefix: str
    progress_interval: float = 5.0
    files_at_once: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    async def _list(self, source: Source) -> list[RemoteFile]:
        """The source's file list, retried like file transfers when the failure is transient, and checked against
        the limits before anything is written."""
        files = await run_with_retries(self.retry, source.name, source.list_files)
        if len(files) > self.limits.files_per_model:
            raise PermanentError(
                f"{source.name} has {len(files)} files, more than limits.filesPerModel ({self.limits.files_per_model})"
            )
        size = sum(f.size or 0 for f in files)
        if size > self.limits.bytes_per_model:
            raise PermanentError(
                f"{source.name} is {size} bytes, more than limits.bytesPerModel ({self.limits.bytes_per_model})"
            )
        return files

    def base_prefix(self, model_id: str, key: str = "") -> str:
        """Where a base model's files go: <pathPrefix>/<baseModelPathPrefix>/<repo id with ":" -> "-">, and with a
        known content key <...>/<that>@<digest of the key>, the one copy every model of that content shares."""
        directory = content_directory(model_id, key) if key else storage_directory(model_id)
        return "/".join(p for p in (self.path_prefix, self.base_model_path_prefix, directory) if p)

    async def _transfer(
        self,
        source: Source,
        files: list[RemoteFile],
        prefix: str,
        beat: Beat | None,
        metadata: MetadataReader | None = None,
        content_key: str | None = None,
    ) -> list[StoredFile]:
        """Copy `files` under `prefix`. `content_key` is given for base models ("" when their revision is unknown):
        their directory is then recorded on the loading row before the first byte is stored."""
        progress = Progress(sum(f.size or 0 for f in files), len(files))
        transfer = Transfer(self.store, progress, self.retry, self.files_at_once, metadata=metadata)
        cleanup = functools.partial(transfer.cleanup, prefix)
        if beat is not None:
            if content_key is not None:
                # Deleting this model removes what its load wrote; deleting another of this content now keeps it.
                progress.content_path, progress.content_key = prefix, content_key
            # Before the first byte: the size, which the server holds against the tenant's quota.
            await beat(progress)
        try:
            work = transfer.copy_all(source, files, prefix)
            return await (self._with_heartbeat(work, progress, beat) if beat else work)
        except LeaseLost as lost:
            # Deleted, or another loader holds it (one frozen past its lease may come back after that loader
            # completed the model).
            await leave(self.store, prefix, _owner(lost), await self._loaded_owns(content_key), cleanup)
            raise
        except Exception as e:
            if _resumable(e):
                # A source or store outage: what is stored (whole files, parts of open uploads) stays, and the next
                # attempt continues from it. Deleting the model removes it.
                raise
            # A refusal (a bad file). It may also come from having lost the claim without a report saying so yet
            # (a loader frozen past its lease finds its temporary files gone), so ask whose the keys are.
            owner = await _owner_now(beat, progress)
            await leave(self.store, prefix, owner, await self._loaded_owns(content_key), cleanup)
            raise
        # Cancelled (the loader is stopping): what is stored stays for the next loader to continue from.

    async def _stored(self, key: str | None) -> list[pb.StoredContent]:
        """The loaded models whose files are the content `key` (none when the key is unknown)."""
        if not key:
            return []
        found = await self.worker.find_stored_content(pb.FindStoredContentRequest(content_key=key))
        return list(found.models)

    async def _loaded_owns(self, key: str | None) -> bool | None:
        """Whether a loaded model now owns the files of content `key` (None: the server cannot say)."""
        try:
            return bool(await self._stored(key))
        except Exception:
            return None

    async def _with_heartbeat(self, work: Awaitable[T], progress: Progress, beat: Beat) -> T:
        """Run `work` while reporting progress (which renews the lease); a refused report stops the work."""

        async def heart() -> None:
            while True:
                await asyncio.sleep(self.progress_interval)
                await beat(progress)

        try:
            async with asyncio.TaskGroup() as tg:
                heartbeat = tg.create_task(heart())
                try:
                    result = await work
                finally:
                    heartbeat.cancel()
        except BaseExceptionGroup as group:
            lost = [e for e in group.exceptions if isinstance(e, LeaseLost)]
            raise (lost[0] if lost else group.exceptions[0]) from group
        return result

    # ---- base models -------------------------------------------------------------------------------------

    async def lost_claim(self, refusal: GRPCError, model_id: str, project_id: str) -> LeaseLost:
        """What a refused report or registration of a base model means. NOT_FOUND is a deleted model, unless
        another loader completed it meanwhile (its requested row goes away on success): then, as after a takeover,
        the files are the other loader's and must stay."""
        deleted = refusal.status == Status.NOT_FOUND
        if deleted:
            path_req = pb.GetBaseModelPathRequest(id=converted(model_id), project_id=project_id)
            deleted = await _not_found(self.worker.get_base_model_path(path_req))
        return LeaseLost(refusal.message or str(refusal.status), deleted=deleted)

    async def already_loaded(
        self, model_id: str, repo: pb.SourceRepository, project_id: str, gguf_type: str = ""
    ) -> bool:
        """Skip what exists: a loaded base model under the converted id (and its GGUF, when one was asked for),
        or a recorded Hugging Face repo."""
        if gguf_type:
            gguf_req = pb.GetBaseModelPathRequest(id=gguf_id(model_id, gguf_type), project_id=project_id)
            if await _not_found(self.worker.get_base_model_path(gguf_req)):
                return False
        path_req = pb.GetBaseModelPathRequest(id=converted(model_id), project_id=project_id)
        if not await _not_found(self.worker.get_base_model_path(path_req)):
            return True
        if repo == pb.SourceRepository.HUGGING_FACE and model_id.count("/") == 1:
            repo_req = pb.GetHfModelRepoRequest(name=model_id, project_id=project_id)
            return not await _not_found(self.worker.get_hf_model_repo(repo_req))
        return False

    async def load_base(
        self,
        model_id: str,
        repo: pb.SourceRepository,
        project_id: str = "",
        revision: str = "",
        beat: Beat | None = None,
        attempt: int = 0,
        gguf_type: str = "",
    ) -> None:
        """Load a base model, and with `gguf_type` convert it to a GGUF of that type too; `attempt` is the claim's
        (0 for the static list, which has no claim)."""
        if await self.already_loaded(model_id, repo, project_id, gguf_type):
            log.info("base model %s is already loaded; skipping", model_id)
            return
        source = self.sources.base(model_id, repo, revision)
        files = await self._list(source)
        if gguf_type:
            await convertible(source, files)  # before a byte is stored: the request may have skipped the check
        detected = detect([f.path for f in files])
        key = content_key(source.kind, model_id, source.pinned_revision)
        reg = _Registration(model_id, repo, project_id, source.revision, key, attempt)
        shared = await self._stored(key)
        if shared:
            # Another project loaded the same content: its files serve this model too.
            log.info("%s at %s is stored already under %s; not copying it again", source.name, key, shared[0].path)
            gguf = await self._gguf(reg, shared[0].path, from_messages(shared[0].files), gguf_type, beat)
            await self._fenced(reg, self._register_shared(reg, detected, shared))
            await self._fenced(reg, gguf())
            return
        prefix = self.base_prefix(model_id, key)
        log.info("loading %s (%d files) into %s", source.name, len(files), prefix)
        metadata = MetadataReader()
        stored = await self._transfer(source, files, prefix, beat, metadata, content_key=key)
        gguf = await self._gguf(reg, prefix, stored, gguf_type, beat)
        try:
            await self._fenced(reg, self._register_base(reg, prefix, detected, stored, metadata))
            await self._fenced(reg, gguf())
        except LeaseLost as lost:
            await leave(
                self.store,
                prefix,
                _owner(lost),
                await self._loaded_owns(key),
                functools.partial(self.discard, prefix, stored),
            )
            raise
        log.info("loaded base model %s from %s at %s", model_id, source.name, source.revision or "-")

    async def _gguf(
        self, reg: _Registration, prefix: str, stored: list[StoredFile], gguf_type: str, beat: Beat | None
    ) -> Callable[[], Awaitable[None]]:
        """Convert the model stored under `prefix` to GGUF `gguf_type`, next to its files; return its registration
        (run once the model's own is). A GGUF another project converted from the same content is reused."""
        if not gguf_type:
            return _nothing
        model_id = gguf_id(reg.model_id, gguf_type)
        gguf_reg = replace(reg, content_key=gguf_content_key(reg.content_key, gguf_type))
        shared = await self._stored(gguf_reg.content_key)
        if shared:
            found = shared[0]
            log.info("%s is converted already at %s; not converting it again", model_id, found.gguf_model_path)
            return functools.partial(
                self._create,
                gguf_reg,
                id=model_id,
                path=found.path,
                formats=list(found.formats),
                gguf_model_path=found.gguf_model_path,
                files=list(found.files),
                metadata=found.metadata,
            )
        conversion = Conversion(self.store, prefix, stored, gguf_type, model_id)
        stream = await conversion.prepare()
        if beat is not None:
            await beat(stream.progress)  # say at once that the load is converting now
        work = conversion.write(stream)
        done = await (self._with_heartbeat(work, stream.progress, beat) if beat else work)
        return functools.partial(
            self._create,
            gguf_reg,
            id=model_id,
            # Like each model of a repo of GGUF files: a directory of its own name beside the file, so deleting
            # the source model (its directory) keeps the GGUF, and deleting the GGUF keeps the source.
            path=f"{prefix}/{model_id}",
            formats=[pb.ModelFormat.GGUF],
            gguf_model_path=conversion.key,
            files=to_messages([done.file]),
            metadata=done.metadata,
        )

    async def _fenced(self, reg: _Registration, registration: Awaitable[None]) -> None:
        """Run a registration; a refusal meaning the claim no longer holds the model becomes LeaseLost."""
        try:
            await registration
        except GRPCError as e:
            if e.status not in LOST_CLAIM:
                raise
            raise await self.lost_claim(e, reg.model_id, reg.project_id) from e

    async def _register_base(
        self,
        reg: _Registration,
        prefix: str,
        detected: Detected,
        stored: list[StoredFile],
        metadata: MetadataReader,
    ) -> None:
        if detected.split_gguf:
            by_path = {f.path: f for f in stored}
            for name in detected.split_gguf:
                stem = name.removesuffix(".gguf")
                await self._create(
                    reg,
                    id=f"{reg.base_id}-{stem}",
                    path=f"{prefix}/{stem}",
                    formats=[pb.ModelFormat.GGUF],
                    gguf_model_path=f"{prefix}/{name}",
                    files=to_messages([by_path[name]]),
                    metadata=metadata.message(by_path[name].size, gguf_file=name),
                )
        else:
            await self._create(
                reg,
                id=reg.base_id,
                path=prefix,
                formats=detected.formats,
                gguf_model_path=f"{prefix}/{detected.gguf_file}" if detected.gguf_file else "",
                files=to_messages(stored),
                metadata=metadata.message(sum(f.size for f in stored), gguf_file=detected.gguf_file),
            )
        await self._record_repo(reg)

    async def _register_shared(self, reg: _Registration, detected: Detected, shared: list[pb.StoredContent]) -> None:
        """Register the model over the files another model of the same content stored: the same paths, files and
        metadata, under this model's own id(s)."""
        for found in shared if detected.split_gguf else shared[:1]:
            stem = found.gguf_model_path.rpartition("/")[2].removesuffix(".gguf")
            await self._create(
                reg,
                id=f"{reg.base_id}-{stem}" if detected.split_gguf else reg.base_id,
                path=found.path,
                formats=list(found.formats),
                gguf_model_path=found.gguf_model_path,
                files=list(found.files),
                metadata=found.metadata,
            )
        await self._record_repo(reg)

    async def _create(self, reg: _Registration, **fields: Any) -> None:
        request = pb.CreateBaseModelRequest(
            source_repository=reg.repo,
            project_id=reg.project_id,
            revision=reg.revision,
            content_key=reg.content_key,
            loading_model_id=reg.model_id if reg.attempt else "",
            attempt=reg.attempt,
            **fields,
        )
        await _ignore_exists(self.worker.create_base_model(request))

    async def _record_repo(self, reg: _Registration) -> None:
        if reg.repo == pb.SourceRepository.HUGGING_FACE and reg.model_id.count("/") == 1:
            request = pb.CreateHfModelRepoRequest(name=reg.model_id, project_id=reg.project_id)
            await _ignore_exists(self.worker.create_hf_model_repo(request))

    async def discard(self, prefix: str, stored: list[StoredFile]) -> None:
        """Remove the files a load stored when its result is refused."""
        keys = [f"{prefix}/{f.path}" for f in stored]
        try:
            await self.store.delete_keys(keys)
        except Exception:
            log.exception("could not remove %d objects of a discarded load: %s", len(keys), keys[:5])

    # ---- fine-tuned models -------------------------------------------------------------------------------

    async def load_fine_tuned(self, claim: pb.AcquireUnloadedModelResponse, beat: Beat | None) -> Loaded:
        source = self.sources.fine_tuned(claim.source_repository, claim.model_file_location)
        files = await self._list(source)
        if not files:
            raise PermanentError("no files downloaded")
        metadata = MetadataReader()
        stored = await self._transfer(source, files, claim.dest_path.rstrip("/"), beat, metadata)
        return Loaded(stored, metadata.message(sum(f.size for f in stored)))

    async def load_static_model(self, spec: FineTunedModelSpec) -> None:
        """A fine-tuned model of the static `models` list: register, copy from Hugging Face, publish."""
        model_id = static_fine_tuned_id(spec.base_model, spec.model)
        if not await _not_found(self.worker.get_model_path(pb.GetModelPathRequest(id=model_id))):
            log.info("model %s is already loaded; skipping", model_id)
            return
        registered = await self.worker.register_model(
            pb.RegisterModelRequest(
                id=model_id,
                base_model=spec.base_model,
                organization_id="default",
                project_id="default",
                adapter=_ADAPTERS[spec.adapter_type],
                quantization=_QUANTIZATIONS[spec.quantization_type],
            )
        )
        try:
            source = self.sources.hugging_face(spec.model)
            files = await self._list(source)
            stored = await self._transfer(source, files, registered.path.rstrip("/"), None)
        except Exception as e:
            # Registered models carry no lease: mark the row failed rather than leave it LOADING for ever.
            failure = pb.UpdateModelLoadingStatusRequestFailure(reason=str(e))
            await self.worker.update_model_loading_status(
                pb.UpdateModelLoadingStatusRequest(id=model_id, failure=failure)
            )
            raise
        await self.worker.publish_model(pb.PublishModelRequest(id=model_id, files=to_messages(stored)))
        log.info("loaded model %s from %s", model_id, source.name)
