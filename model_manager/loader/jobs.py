"""Loading one model, step by step: what each kind of load (a base model, its GGUF conversion, a fine-tuned
model, a model of the static lists) does and in which order. The mechanisms live beside it: copying files
(`copying.py`), what the server says about claims and owners (`claims.py`), registering rows (`registration.py`),
and what a load that cannot finish leaves (`leftovers.py`).

A job either finishes or raises: LoadError (report as the failure reason), LeaseLost (another loader owns the model
now), or CancelledError (shutdown). After an outage or a shutdown what it stored stays, for the next attempt to
continue from; after a refusal (a bad file, a deleted model) it is removed first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from model_manager.config import FineTunedModelSpec, LimitsConfig
from model_manager.core.file_rule import DEFAULT_RULE, FileRule
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
from model_manager.loader.claims import Beat, Claims, not_found, owner_after
from model_manager.loader.convert.precheck import convertible
from model_manager.loader.convert.run import Conversion
from model_manager.loader.copying import Copier
from model_manager.loader.errors import LeaseLost, PermanentError
from model_manager.loader.formats import detect
from model_manager.loader.leftovers import leave
from model_manager.loader.metadata import MetadataReader
from model_manager.loader.outcomes import Loaded
from model_manager.loader.pickles import scan_stored
from model_manager.loader.registration import Registrar, Registration
from model_manager.loader.retry import RetryPolicy
from model_manager.loader.sources.factory import SourceFactory
from model_manager.loader.worker_api import WorkerApi
from model_manager.objectstore.base import ObjectStore
from model_manager.proto.llmariner.models.server import v1 as pb

log = logging.getLogger(__name__)

_ADAPTERS = {"": pb.AdapterType.UNSPECIFIED, "lora": pb.AdapterType.LORA, "qlora": pb.AdapterType.QLORA}
_QUANTIZATIONS = {"": pb.QuantizationType.UNSPECIFIED, "gguf": pb.QuantizationType.GGUF, "awq": pb.QuantizationType.AWQ}


async def _nothing() -> None:
    pass


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

    def __post_init__(self) -> None:
        self.claims = Claims(self.worker)
        self.copier = Copier(
            self.store, self.claims, self.progress_interval, self.files_at_once, self.retry, self.limits
        )
        self.registrar = Registrar(self.worker)

    def base_prefix(self, model_id: str, key: str = "") -> str:
        """Where a base model's files go: <pathPrefix>/<baseModelPathPrefix>/<repo id with ":" -> "-">, and with a
        known content key <...>/<that>@<digest of the key>, the one copy every model of that content shares."""
        directory = content_directory(model_id, key) if key else storage_directory(model_id)
        return "/".join(p for p in (self.path_prefix, self.base_model_path_prefix, directory) if p)

    # ---- base models -------------------------------------------------------------------------------------

    async def already_loaded(
        self, model_id: str, repo: pb.SourceRepository, project_id: str, gguf_type: str = ""
    ) -> bool:
        """Skip what exists: a loaded base model under the converted id (and its GGUF, when one was asked for),
        or a recorded Hugging Face repo."""
        if gguf_type:
            gguf_req = pb.GetBaseModelPathRequest(id=gguf_id(model_id, gguf_type), project_id=project_id)
            if await not_found(self.worker.get_base_model_path(gguf_req)):
                return False
        path_req = pb.GetBaseModelPathRequest(id=converted(model_id), project_id=project_id)
        if not await not_found(self.worker.get_base_model_path(path_req)):
            return True
        if repo == pb.SourceRepository.HUGGING_FACE and model_id.count("/") == 1:
            repo_req = pb.GetHfModelRepoRequest(name=model_id, project_id=project_id)
            return not await not_found(self.worker.get_hf_model_repo(repo_req))
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
        rule: FileRule = DEFAULT_RULE,
    ) -> None:
        """Load a base model (the files `rule` selects), and with `gguf_type` convert it to a GGUF of that type
        too; `attempt` is the claim's (0 for the static list, which has no claim)."""
        if await self.already_loaded(model_id, repo, project_id, gguf_type):
            log.info("base model %s is already loaded; skipping", model_id)
            return
        source = self.sources.base(model_id, repo, revision)
        chosen = await self.copier.list_files(source, rule)
        files = chosen.files
        if gguf_type:
            await convertible(source, files)  # before a byte is stored: the request may have skipped the check
        detected = detect([f.path for f in files])
        # Two selections of one revision are two contents; a selection of every file is the whole revision.
        selected = sorted(f.path for f in files) if chosen.skipped else []
        key = content_key(source.kind, source.content_name or model_id, source.pinned_revision, selected)
        reg = Registration(model_id, repo, project_id, source.revision, key, attempt)
        shared = await self.claims.stored(key)
        if shared:
            # Another project loaded the same content: its files serve this model too.
            log.info("%s at %s is stored already under %s; not copying it again", source.name, key, shared[0].path)
            gguf = await self._gguf(reg, shared[0].path, from_messages(shared[0].files), gguf_type, beat)
            await self.claims.fenced(model_id, project_id, self.registrar.shared_files(reg, detected, shared))
            await self.claims.fenced(model_id, project_id, gguf())
            return
        prefix = self.base_prefix(model_id, key)
        log.info("loading %s (%d files) into %s", source.name, len(files), prefix)
        skipped = [pb.SkippedFile(path=s.path, size=s.size, reason=s.reason) for s in chosen.skipped]
        metadata = MetadataReader(skipped, code_files=chosen.requires_remote_code, described=source.described)
        # Pickles (allowed by the request) are scanned once stored, before the load may succeed.
        pickles = [f.path for f in chosen.pickles]

        async def scan(prefix: str, stored: list[StoredFile]) -> None:
            await scan_stored(self.store, prefix, pickles)

        verify = scan if pickles else None
        stored = await self.copier.copy(source, files, prefix, beat, metadata, content_key=key, verify=verify)
        gguf = await self._gguf(reg, prefix, stored, gguf_type, beat)
        try:
            await self.claims.fenced(
                model_id, project_id, self.registrar.stored_files(reg, prefix, detected, stored, metadata)
            )
            await self.claims.fenced(model_id, project_id, gguf())
        except LeaseLost as lost:
            await leave(
                self.store,
                prefix,
                owner_after(lost),
                await self.claims.loaded_owns(key),
                functools.partial(self.discard, prefix, stored),
            )
            raise
        log.info("loaded base model %s from %s at %s", model_id, source.name, source.revision or "-")

    async def _gguf(
        self, reg: Registration, prefix: str, stored: list[StoredFile], gguf_type: str, beat: Beat | None
    ) -> Callable[[], Awaitable[None]]:
        """Convert the model stored under `prefix` to GGUF `gguf_type`, next to its files; return its registration
        (run once the model's own is). A GGUF another project converted from the same content is reused."""
        if not gguf_type:
            return _nothing
        model_id = gguf_id(reg.model_id, gguf_type)
        gguf_reg = replace(reg, content_key=gguf_content_key(reg.content_key, gguf_type))
        shared = await self.claims.stored(gguf_reg.content_key)
        if shared:
            found = shared[0]
            log.info("%s is converted already at %s; not converting it again", model_id, found.gguf_model_path)
            return functools.partial(
                self.registrar.create,
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
        done = await (self.copier.with_heartbeat(work, stream.progress, beat) if beat else work)
        return functools.partial(
            self.registrar.create,
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
        files = (await self.copier.list_files(source)).files
        if not files:
            raise PermanentError("no files downloaded")
        metadata = MetadataReader()
        stored = await self.copier.copy(source, files, claim.dest_path.rstrip("/"), beat, metadata)
        return Loaded(stored, metadata.message(sum(f.size for f in stored)))

    async def load_static_model(self, spec: FineTunedModelSpec) -> None:
        """A fine-tuned model of the static `models` list: register, copy from Hugging Face, publish."""
        model_id = static_fine_tuned_id(spec.base_model, spec.model)
        if not await not_found(self.worker.get_model_path(pb.GetModelPathRequest(id=model_id))):
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
            files = (await self.copier.list_files(source)).files
            stored = await self.copier.copy(source, files, registered.path.rstrip("/"), None)
        except Exception as e:
            # Registered models carry no lease: mark the row failed rather than leave it LOADING for ever.
            failure = pb.UpdateModelLoadingStatusRequestFailure(reason=str(e))
            await self.worker.update_model_loading_status(
                pb.UpdateModelLoadingStatusRequest(id=model_id, failure=failure)
            )
            raise
        await self.worker.publish_model(pb.PublishModelRequest(id=model_id, files=to_messages(stored)))
        log.info("loaded model %s from %s", model_id, source.name)
