"""ModelsWorkerService: the internal API of loaders, inference engines and job dispatchers."""

from __future__ import annotations

from functools import partial
from typing import Any

from model_manager.core import ids, metrics
from model_manager.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from model_manager.core.file_rule import FileRule
from model_manager.core.identity import Identity
from model_manager.proto.llmariner.models.server.v1 import (
    AcquireUnloadedBaseModelRequest,
    AcquireUnloadedBaseModelResponse,
    AcquireUnloadedModelRequest,
    AcquireUnloadedModelResponse,
    AdapterType,
    BaseModel,
    CreateBaseModelRequest,
    CreateHfModelRepoRequest,
    CreateStorageConfigRequest,
    FindStoredContentRequest,
    FindStoredContentResponse,
    GetBaseModelPathRequest,
    GetBaseModelPathResponse,
    GetHfModelRepoRequest,
    GetModelAttributesRequest,
    GetModelPathRequest,
    GetModelPathResponse,
    GetModelRequest,
    GetStorageConfigRequest,
    HfModelRepo,
    ListModelsRequest,
    Model,
    ModelAttributes,
    ModelFormat,
    PublishModelRequest,
    PublishModelResponse,
    QuantizationType,
    RegisterModelRequest,
    RegisterModelResponse,
    SourceRepository,
    StorageConfig,
)
from model_manager.service import model_config, namespace, tenancy, validate
from model_manager.service.cache import Encoding, ListScope
from model_manager.service.context import ServiceContext
from model_manager.service.convert import stored_content, stored_files, stored_metadata, to_model
from model_manager.service.leases import Leases
from model_manager.service.loading_status import LoadingStatusService
from model_manager.service.lookup import find_visible, with_aliases
from model_manager.store import aliases, catalog, listing, loading, registry
from model_manager.store.database import Conn
from model_manager.store.listing import Page
from model_manager.store.records import Kind, LoadingStatus, ModelColumns, ModelRecord, encode_formats

_REGISTER_TRIES = 8


class WorkerService(LoadingStatusService):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.leases = Leases(ctx)

    async def create_storage_config(self, who: Identity, req: CreateStorageConfigRequest) -> StorageConfig:
        """Record the tenant's storage prefix: what the worker asks for, placed in the tenant's own area (the
        answer says where it went; loaders of this project store there, base models included)."""
        prefix = namespace.assign_prefix(who.tenant_id, validate.check_object_path(req.path_prefix, "path_prefix"))
        async with self.ctx.db.transaction() as conn:
            await registry.create_storage_config(conn, who.tenant_id, prefix)
        return StorageConfig(path_prefix=prefix)

    async def get_storage_config(self, who: Identity, req: GetStorageConfigRequest) -> StorageConfig:
        async with self.ctx.db.reading() as conn:
            prefix = await registry.get_storage_prefix(conn, who.tenant_id)
        if prefix is None:
            raise NotFound("storage config not found")
        return StorageConfig(path_prefix=prefix)

    async def get_model(self, who: Identity, req: GetModelRequest) -> Model:
        validate.check_id(req.id)
        async with self.ctx.db.reading() as conn:
            rec = await find_visible(conn, who, req.id, True, None)
            return to_model((await with_aliases(conn, who.tenant_id, [rec], None))[0])

    async def list_models_encoded(self, who: Identity, req: ListModelsRequest, encoding: Encoding) -> bytes:
        """Every loaded model of the tenant, written by the front; reused from the cache while the catalogue stands."""
        key = ("worker-list", encoding.name, who.tenant_id)
        scope = ListScope(who.tenant_id, loading=False)
        return await self.ctx.answer(key, scope, partial(self._list, who=who), encoding.page)

    @staticmethod
    async def _list(conn: Conn, who: Identity) -> Page:
        records = await with_aliases(conn, who.tenant_id, await listing.all_loaded(conn, who.tenant_id), None)
        return Page(records, False, len(records))

    async def register_model(self, who: Identity, req: RegisterModelRequest) -> RegisterModelResponse:
        base = validate.check_id(req.base_model, "base_model")
        validate.require(req.organization_id, "organization_id")
        validate.require(req.project_id, "project_id")
        if not req.id:
            validate.check_suffix(req.suffix)
        else:
            validate.check_id(req.id)
        async with self.ctx.db.transaction() as conn:
            await tenancy.check_project(self.ctx, conn, who, req.project_id, req.organization_id)
            if req.id:
                if await catalog.find_fine_tuned(conn, who.tenant_id, req.id, published_only=False):
                    raise AlreadyExists(f'model "{req.id}" already exists')
                model_id = req.id
            else:
                model_id = await self._fresh_id(conn, who.tenant_id, ids.converted(base), req.suffix)
            path = req.path or f"{await self.ctx.path_prefix(conn, who.tenant_id)}/{who.tenant_id}/{model_id}"
            await tenancy.check_path(self.ctx, conn, who, path, "path")
            await catalog.insert_model(
                conn,
                Kind.FINE_TUNED,
                {
                    "tenant_id": who.tenant_id,
                    "organization_id": req.organization_id,
                    "project_id": req.project_id,
                    "model_id": model_id,
                    "base_model_id": base,
                    "suffix": req.suffix,
                    "path": path,
                    "adapter": int(req.adapter),
                    "quantization": int(req.quantization),
                    "source_repository": int(SourceRepository.FINE_TUNING),
                    "loading_status": LoadingStatus.LOADING,
                    "is_published": False,
                    "config": model_config.encode(model_config.default_config()),
                },
                self.ctx.now(),
            )
        return RegisterModelResponse(id=model_id, path=path)

    async def _fresh_id(self, conn: Conn, tenant_id: str, base: str, suffix: str) -> str:
        for _ in range(_REGISTER_TRIES):
            candidate = ids.fine_tuned_id(base, f"{suffix}-{ids.random_suffix()}")
            if await catalog.find_fine_tuned(conn, tenant_id, candidate, published_only=False) is None:
                return candidate
        raise AlreadyExists("could not find a free model id; try again")

    async def publish_model(self, who: Identity, req: PublishModelRequest) -> PublishModelResponse:
        validate.check_id(req.id)
        tenancy.check_files(req.files)
        async with self.ctx.db.transaction() as conn:
            rec = await catalog.find_fine_tuned(conn, who.tenant_id, req.id, published_only=False)
            if rec is None:
                raise NotFound(f'model "{req.id}" not found')
            if loading.is_fenced(rec) or rec.model_file_location:
                # Requested from a location: only the claim loading it may complete it, as with every other
                # worker write on a leased model (a stale or rogue worker would mark it done with any files).
                rec = await loading.lock_loading(conn, Kind.FINE_TUNED, who.tenant_id, req.id, None, req.attempt)
            await catalog.update_model(
                conn,
                rec,
                {
                    "is_published": True,
                    "loading_status": LoadingStatus.SUCCEEDED,
                    "lease_expires_at": None,
                    "files": stored_files(req.files),
                },
                self.ctx.now(),
            )
        return PublishModelResponse()

    async def _published(self, who: Identity, model_id: str) -> ModelRecord:
        validate.check_id(model_id)
        async with self.ctx.db.reading() as conn:
            rec = await catalog.find_fine_tuned(conn, who.tenant_id, model_id)
        if rec is None:
            raise NotFound(f'model "{model_id}" not found')
        return rec

    async def get_model_path(self, who: Identity, req: GetModelPathRequest) -> GetModelPathResponse:
        return GetModelPathResponse(path=(await self._published(who, req.id)).path)

    async def get_model_attributes(self, who: Identity, req: GetModelAttributesRequest) -> ModelAttributes:
        rec = await self._published(who, req.id)
        return ModelAttributes(
            path=rec.path,
            base_model=rec.base_model_id,
            adapter=AdapterType(rec.adapter),
            quantization=QuantizationType(rec.quantization),
        )

    async def create_base_model(self, who: Identity, req: CreateBaseModelRequest) -> BaseModel:
        validate.check_id(req.id)
        validate.require(req.path, "path")
        formats = list(req.formats) or [ModelFormat.GGUF]
        if ModelFormat.GGUF in formats and not req.gguf_model_path:
            raise InvalidArgument("gguf_model_path is required when formats include MODEL_FORMAT_GGUF")
        tenancy.check_files(req.files)
        values: ModelColumns = {
            "path": req.path,
            "formats": encode_formats(formats),
            "gguf_model_path": req.gguf_model_path,
            "source_repository": int(req.source_repository),
            "revision": req.revision,
            "content_key": validate.check_content_key(req.content_key),
            "files": stored_files(req.files),
            **stored_metadata(req.metadata),
            "loading_status": LoadingStatus.SUCCEEDED,
            "loading_failure_reason": "",
            "loading_status_message": "",
            "lease_holder": None,
            "lease_expires_at": None,
        }
        async with self.ctx.db.transaction() as conn:
            await tenancy.check_project(self.ctx, conn, who, req.project_id)
            await tenancy.check_path(self.ctx, conn, who, req.path, "path")
            if req.gguf_model_path:
                await tenancy.check_path(self.ctx, conn, who, req.gguf_model_path, "gguf_model_path")
            claim = None
            if req.loading_model_id:
                # Fenced by the claim: a model deleted (or taken over) while it loaded gets nothing registered.
                validate.check_id(req.loading_model_id, "loading_model_id")
                claim = await loading.lock_loading(
                    conn, Kind.BASE, who.tenant_id, req.loading_model_id, req.project_id, req.attempt
                )
            # Requests are refused with an alias's name; a loader registering one anyway (its static list) is too.
            alias = await aliases.taken(conn, who.tenant_id, [req.id])
            if alias is not None:
                raise FailedPrecondition(f'model "{req.id}" would have the name of the alias "{alias}"')
            existing = await catalog.find_base(conn, who.tenant_id, req.id, req.project_id)
            if existing is not None and existing.project_id == req.project_id:
                if existing.is_loaded:
                    raise AlreadyExists(f'model "{req.id}" already exists')
                held = existing.loading_status == LoadingStatus.LOADING and loading.is_fenced(existing)
                if held and (claim is None or claim.id != existing.id):
                    # Only the claim that holds a loading model may complete it.
                    raise FailedPrecondition(
                        f'model "{req.id}" is being loaded under a lease; only its loader may register it '
                        "(loading_model_id and attempt of that claim)"
                    )
                # The loader finishing a model requested under this very id.
                rec = await catalog.update_model(conn, existing, values, self.ctx.now())
            elif claim is not None:
                rec = await catalog.insert_model(
                    conn, Kind.BASE, self._new_base(who, req, values, claim.id), self.ctx.now()
                )
            else:
                # A project-scoped model may share its id with a global one: inside its project it wins.
                rec = await catalog.insert_model(
                    conn, Kind.BASE, self._new_base(who, req, values, None), self.ctx.now()
                )
        return BaseModel(id=rec.model_id, created=rec.created_at, object="basemodel")

    @staticmethod
    def _new_base(
        who: Identity, req: CreateBaseModelRequest, values: ModelColumns, loaded_by: int | None
    ) -> ModelColumns:
        return {
            "tenant_id": who.tenant_id,
            "project_id": req.project_id,
            "model_id": req.id,
            "config": model_config.encode(model_config.default_config()),
            "loaded_by": loaded_by,
            **values,
        }

    async def get_base_model_path(self, who: Identity, req: GetBaseModelPathRequest) -> GetBaseModelPathResponse:
        validate.check_id(req.id)
        async with self.ctx.db.reading() as conn:
            await tenancy.check_project(self.ctx, conn, who, req.project_id)
            rec = await catalog.find_base(conn, who.tenant_id, req.id, req.project_id, loaded_only=True)
        if rec is None:
            raise NotFound(f'model "{req.id}" not found')
        formats = list(rec.formats) or ([int(ModelFormat.GGUF)] if rec.gguf_model_path else [])
        return GetBaseModelPathResponse(
            formats=[ModelFormat(f) for f in formats], path=rec.path, gguf_model_path=rec.gguf_model_path
        )

    async def find_stored_content(self, who: Identity, req: FindStoredContentRequest) -> FindStoredContentResponse:
        """The loaded base models of the caller's tenant (any project) whose files are `content_key`, one per
        distinct path: what a loader registers instead of copying the same files again."""
        validate.require(req.content_key, "content_key")
        validate.check_content_key(req.content_key)
        async with self.ctx.db.reading() as conn:
            recs = await catalog.stored_content(conn, who.tenant_id, req.content_key)
        return FindStoredContentResponse(models=[stored_content(r) for r in recs])

    async def create_hf_model_repo(self, who: Identity, req: CreateHfModelRepoRequest) -> HfModelRepo:
        validate.check_id(req.name, "name")
        async with self.ctx.db.transaction() as conn:
            await tenancy.check_project(self.ctx, conn, who, req.project_id)
            await registry.create_hf_repo(conn, who.tenant_id, req.project_id, req.name)
        return HfModelRepo(name=req.name)

    async def get_hf_model_repo(self, who: Identity, req: GetHfModelRepoRequest) -> HfModelRepo:
        validate.check_id(req.name, "name")
        async with self.ctx.db.reading() as conn:
            found = await registry.hf_repo_exists(conn, who.tenant_id, req.project_id, req.name)
        if not found:
            raise NotFound(f'hugging face repo "{req.name}" not found')
        return HfModelRepo(name=req.name)

    async def acquire_unloaded_base_model(
        self, who: Identity, req: AcquireUnloadedBaseModelRequest
    ) -> AcquireUnloadedBaseModelResponse:
        rec = await self._claim(who, Kind.BASE, req.holder)
        if rec is None:
            return AcquireUnloadedBaseModelResponse()
        return AcquireUnloadedBaseModelResponse(
            base_model_id=rec.model_id,
            source_repository=SourceRepository(rec.source_repository),
            project_id=rec.project_id,
            attempt=rec.attempt,
            revision=rec.requested_revision,
            convert_gguf=rec.convert_gguf,
            **_file_rule(rec.file_rule),
        )

    async def acquire_unloaded_model(
        self, who: Identity, req: AcquireUnloadedModelRequest
    ) -> AcquireUnloadedModelResponse:
        rec = await self._claim(who, Kind.FINE_TUNED, req.holder)
        if rec is None:
            return AcquireUnloadedModelResponse()
        return AcquireUnloadedModelResponse(
            model_id=rec.model_id,
            is_base_model=False,
            source_repository=SourceRepository(rec.source_repository),
            model_file_location=rec.model_file_location,
            dest_path=rec.path,
            attempt=rec.attempt,
        )

    async def _claim(self, who: Identity, kind: Kind, holder: str) -> ModelRecord | None:
        await self.leases.expire_if_due()  # a model given back is claimable at once
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as conn:
            rec = await loading.claim(conn, kind, who.tenant_id, holder, self.ctx.lease_seconds, now)
        if rec is not None:
            metrics.LOADS.labels("started").inc()
        return rec


def _file_rule(stored: str) -> dict[str, Any]:
    rule = FileRule.decode(stored)
    return {"include": list(rule.include), "exclude": list(rule.exclude), "allow_pickle": rule.allow_pickle}
