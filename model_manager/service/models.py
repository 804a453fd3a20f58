"""ModelsService: the public catalogue API (create, list, get, update, delete, activate, deactivate)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from model_manager.core import ids
from model_manager.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from model_manager.core.file_rule import FileRule
from model_manager.core.identity import Identity, Role
from model_manager.core.units import human_bytes
from model_manager.proto.llmariner.models.server.v1 import (
    ActivateModelRequest,
    ActivateModelResponse,
    CreateModelRequest,
    DeactivateModelRequest,
    DeactivateModelResponse,
    DeleteModelRequest,
    DeleteModelResponse,
    GetModelRequest,
    ListModelsRequest,
    Model,
    ModelConfig,
    ModelFormat,
    RetryModelRequest,
    SourceRepository,
    UpdateModelRequest,
    WatchModelRequest,
)
from model_manager.service import access, model_config, quota, tenancy, validate, watch
from model_manager.service.cache import Encoding, ListScope, ModelScope
from model_manager.service.context import ServiceContext
from model_manager.service.convert import to_model
from model_manager.service.file_removal import FileRemoval
from model_manager.service.lookup import find_visible, resolve, with_aliases
from model_manager.service.source_check import SourceCheck
from model_manager.store import aliases, catalog, listing, loading
from model_manager.store.database import Conn
from model_manager.store.listing import Page
from model_manager.store.records import Activation, Kind, LoadingStatus, ModelColumns, ModelRecord

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
_BASE_SOURCES = (
    "SOURCE_REPOSITORY_HUGGING_FACE, SOURCE_REPOSITORY_OLLAMA, SOURCE_REPOSITORY_OBJECT_STORE, SOURCE_REPOSITORY_OCI"
)


_PINNED_BY_CHECK = (SourceRepository.HUGGING_FACE, SourceRepository.OCI)

# ?format= takes what the CLI shows (gguf, hugging-face) or the enum's own name (MODEL_FORMAT_GGUF), in any case.
_FORMATS = {f.name.lower().replace("_", "-"): int(f) for f in ModelFormat if f != ModelFormat.UNSPECIFIED}


def _filters(req: ListModelsRequest) -> listing.Filters:
    """The listing's filters, refused with the values allowed when the format is not one."""
    fmt = None
    if req.format:
        fmt = _FORMATS.get(req.format.lower().removeprefix("model_format_").replace("_", "-"))
        if fmt is None:
            raise InvalidArgument(f"format must be one of {', '.join(sorted(_FORMATS))}, got {req.format!r}")
    for name in ("architecture", "quantization"):
        validate.check_text(getattr(req, name), name)
    return listing.Filters(fmt, req.architecture.lower(), req.quantization.lower())


class ModelsService:
    def __init__(self, ctx: ServiceContext, source_check: SourceCheck | None = None) -> None:
        self.ctx = ctx
        self.removals = FileRemoval(ctx)
        self.source_check = source_check  # None: base models are accepted without asking their source

    async def get_model_encoded(self, who: Identity, req: GetModelRequest, encoding: Encoding) -> bytes:
        """GetModel's answer written by the front, reused from the cache while the catalogue stands."""
        self._check_get(who, req)
        try:
            return await self._answer(who, req, encoding)
        except NotFound:
            # Not a model: maybe an alias. Read uncached, so that a re-point shows at once on every replica; the
            # model it names is answered (and cached) as itself.
            async with self.ctx.db.reading() as conn:
                target = await resolve(conn, who, req.id, who.project_id)
            if target is None:
                raise
            aliased = GetModelRequest(id=target, include_loading_model=req.include_loading_model)
            return await self._answer(who, aliased, encoding)

    async def _answer(self, who: Identity, req: GetModelRequest, encoding: Encoding) -> bytes:
        key = ("get", encoding.name, who.tenant_id, who.project_id, req.id, req.include_loading_model)
        scope = ModelScope(who.tenant_id, req.id)
        return await self.ctx.answer(key, scope, functools.partial(self._get, who=who, req=req), encoding.model)

    @staticmethod
    def _check_get(who: Identity, req: GetModelRequest) -> None:
        access.require(who, Role.READER, "reading models")
        validate.check_id(req.id)

    @staticmethod
    async def _get(conn: Conn, who: Identity, req: GetModelRequest) -> ModelRecord:
        rec = await find_visible(conn, who, req.id, req.include_loading_model, who.project_id, follow_aliases=False)
        return (await with_aliases(conn, who.tenant_id, [rec], who.project_id))[0]

    async def list_models_encoded(self, who: Identity, req: ListModelsRequest, encoding: Encoding) -> bytes:
        self._check_list(who, req)
        key = (
            "list",
            encoding.name,
            who.tenant_id,
            who.project_id,
            req.include_loading_models,
            req.limit,
            req.after,
            _filters(req),
        )
        scope = ListScope(who.tenant_id, loading=req.include_loading_models)
        return await self.ctx.answer(key, scope, functools.partial(self._list, who=who, req=req), encoding.page)

    @staticmethod
    def _check_list(who: Identity, req: ListModelsRequest) -> None:
        access.require(who, Role.READER, "listing models")
        if req.limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {req.limit}")
        _filters(req)

    async def _list(self, conn: Conn, who: Identity, req: ListModelsRequest) -> Page:
        limit = min(req.limit or DEFAULT_LIMIT, self.ctx.limits.page_size)
        scope = listing.ListScope(who.tenant_id, who.project_id, req.include_loading_models, _filters(req))
        after: tuple[int, str] | None = None
        if req.after:
            group = await listing.group_of(conn, scope, req.after)
            if group is None:
                raise InvalidArgument(f'after: model "{req.after}" not found')
            after = (group, req.after)
        page = await listing.page(conn, scope, limit, after)
        return replace(page, records=await with_aliases(conn, who.tenant_id, page.records, who.project_id))

    def watch_model_encoded(
        self, who: Identity, req: WatchModelRequest, encoding: Encoding
    ) -> AsyncGenerator[bytes, None]:
        """WatchModel's events, written by the front (see watch.py)."""
        return watch.watch(self.ctx, who, req, encoding)

    async def create_model(self, who: Identity, req: CreateModelRequest) -> Model:
        access.require(who, Role.WRITER, "creating models")
        if not req.is_fine_tuned_model and not req.is_project_scoped:
            access.require(who, Role.ADMIN, "creating a global base model (one not scoped to a project)")
        config = model_config.validate(req.config) if req.config is not None else model_config.default_config()
        if req.is_fine_tuned_model:
            if req.convert is not None:
                raise InvalidArgument("convert applies to base models only, not to fine-tuned ones")
            if req.include or req.exclude or req.allow_pickle:
                raise InvalidArgument(
                    "include, exclude and allow_pickle apply to base models only; a fine-tuned model's location "
                    "is stored as it is"
                )
            return await self._create_fine_tuned(who, req, config)
        return await self._create_base(who, req, config)

    async def _create_base(self, who: Identity, req: CreateModelRequest, config: ModelConfig) -> Model:
        revision = ""
        source = req.source_repository
        if source == SourceRepository.HUGGING_FACE:
            ref = validate.parse_hugging_face(req.id)
            model_id, revision = ref.model_id, ref.revision
        elif source == SourceRepository.OLLAMA:
            model_id = validate.check_ollama(req.id)
        elif source == SourceRepository.OCI:
            # Kept as written (oci:// dropped): HOST[:PORT]/REPOSITORY:TAG, or @sha256:... for one manifest.
            oci = validate.check_registry(validate.parse_oci(req.id), self.ctx.allowed_registries, "id")
            model_id = validate.check_id(str(oci))
        elif source == SourceRepository.OBJECT_STORE:
            model_id = validate.check_id(req.id)
            if model_id.startswith("s3://"):
                raise InvalidArgument(
                    f"id {model_id!r} must be the model's name, not an s3:// URL; the loader reads it from the "
                    "configured source bucket"
                )
        else:
            raise InvalidArgument(f"source_repository must be one of {_BASE_SOURCES} for a base model")
        gguf = validate.check_gguf_type(req.convert.gguf) if req.convert is not None else ""
        rule = FileRule.checked(req.include, req.exclude, req.allow_pickle)
        if not rule.default_selection and source == SourceRepository.OLLAMA:
            raise InvalidArgument("include/exclude: an Ollama model is stored whole (its manifest names its files)")
        if gguf and source == SourceRepository.OLLAMA:
            raise InvalidArgument(
                "convert.gguf: an Ollama model is stored as GGUF already; there is nothing to convert"
            )
        project_id = who.project_id if req.is_project_scoped else ""
        found: ModelColumns = {}
        facts = None
        if self.source_check is not None and not req.skip_source_check:
            # Before the transaction: no connection is held while the source answers.
            facts = await self.source_check.check(model_id, int(source), revision, gguf, rule)
            if facts is not None:
                found = {
                    # Loads (and retries) read the commit the check saw, not whatever the branch points to later.
                    # So does an OCI load: the manifest digest the check saw, wherever the tag moves meanwhile.
                    "requested_revision": facts.revision if source in _PINNED_BY_CHECK else revision,
                    "progress_bytes_total": facts.total_bytes,
                    "progress_files_total": facts.files,
                    "loading_status_message": f"found at the source: {human_bytes(facts.total_bytes)} in "
                    f"{facts.files} files; waiting for a loader",
                }
        async with self.ctx.db.transaction() as conn:
            candidates = list(dict.fromkeys([model_id, ids.converted(model_id)]))
            if gguf:
                candidates.append(ids.gguf_id(model_id, gguf))
            taken = await catalog.base_id_taken(conn, who.tenant_id, candidates, project_id or None)
            if taken in candidates:
                raise AlreadyExists(f'model "{taken}" already exists')
            if taken is not None:
                raise AlreadyExists(
                    f'model "{model_id}" clashes with model "{taken}", loaded as "{ids.converted(taken)}"'
                )
            alias = await aliases.taken(conn, who.tenant_id, candidates)
            if alias is not None:
                raise AlreadyExists(f'model "{model_id}" would have the name of the alias "{alias}"')
            await self._check_storage(conn, who, model_id)
            await self._check_source(conn, who, Kind.BASE, int(source), model_id)
            # Unchecked (or its source was slow), its size counts once its loader knows it; a tenant over its
            # quota already is refused now.
            await quota.check(self.ctx, conn, who.tenant_id, facts.total_bytes if facts is not None else 0)
            rec = await catalog.insert_model(
                conn,
                Kind.BASE,
                {
                    "tenant_id": who.tenant_id,
                    "project_id": project_id,
                    "model_id": model_id,
                    "source_repository": int(source),
                    "loading_status": LoadingStatus.REQUESTED,
                    "requested_revision": revision,
                    "convert_gguf": gguf,
                    "file_rule": rule.encode(),
                    "config": model_config.encode(config),
                    **found,
                },
                self.ctx.now(),
            )
        return to_model(rec)

    async def _create_fine_tuned(self, who: Identity, req: CreateModelRequest, config: ModelConfig) -> Model:
        base_model_id = validate.check_id(req.base_model_id, "base_model_id")
        suffix = validate.check_suffix(req.suffix)
        if req.source_repository == SourceRepository.OBJECT_STORE:
            validate.check_s3_url(req.model_file_location, "model_file_location")
        elif req.source_repository == SourceRepository.HUGGING_FACE:
            validate.parse_hugging_face(req.model_file_location, "model_file_location")
        else:
            raise InvalidArgument(
                "source_repository must be SOURCE_REPOSITORY_OBJECT_STORE or SOURCE_REPOSITORY_HUGGING_FACE "
                "for a fine-tuned model"
            )
        model_id = ids.fine_tuned_id(base_model_id, suffix)
        validate.check_id(model_id)
        async with self.ctx.db.transaction() as conn:
            if await catalog.find_base(conn, who.tenant_id, base_model_id, who.project_id, loaded_only=True) is None:
                raise NotFound(f'base model "{base_model_id}" not found')
            await self._check_source(conn, who, Kind.FINE_TUNED, int(req.source_repository), req.model_file_location)
            path = f"{await self.ctx.path_prefix(conn, who.tenant_id)}/{who.tenant_id}/{who.project_id}/{model_id}"
            await tenancy.check_path(self.ctx, conn, who, path, "the model's storage path")  # rows older than areas
            rec = await catalog.insert_model(
                conn,
                Kind.FINE_TUNED,
                {
                    "tenant_id": who.tenant_id,
                    "organization_id": who.organization_id,
                    "project_id": who.project_id,
                    "model_id": model_id,
                    "base_model_id": base_model_id,
                    "suffix": suffix,
                    "path": path,
                    "model_file_location": req.model_file_location,
                    "source_repository": int(req.source_repository),
                    "loading_status": LoadingStatus.REQUESTED,
                    # Published at once so that it shows in listings with include_loading_models while it loads.
                    "is_published": True,
                    "config": model_config.encode(config),
                },
                self.ctx.now(),
            )
        return to_model(rec)

    @asynccontextmanager
    async def _changing(self, who: Identity, model_id: str, verb: str) -> AsyncIterator[tuple[Conn, ModelRecord]]:
        """The model `model_id` as the caller may change it ("deleting"), read in the transaction that changes it."""
        access.require(who, Role.WRITER, f"{verb} models")
        validate.check_id(model_id)
        async with self.ctx.db.transaction() as conn:
            rec = await find_visible(conn, who, model_id, True, who.project_id)
            access.require_owner(who, rec, verb)
            yield conn, rec

    async def delete_model(self, who: Identity, req: DeleteModelRequest) -> DeleteModelResponse:
        async with self._changing(who, req.id, "deleting") as (conn, rec):
            naming = await aliases.naming(conn, who.tenant_id, [rec.model_id])
            if naming:
                listed = ", ".join(f'"{n}"' for n in naming)
                raise FailedPrecondition(
                    f'model "{rec.model_id}" is named by the alias {listed}: point the alias at another model or '
                    "delete it first"
                )
            await catalog.delete_inactive_model(conn, rec)
            # A model deleted while it loads takes along what its load registered so far.
            discarded = await catalog.delete_registered_by(conn, rec)
            # A model whose load failed or is under way also owns what its load wrote so far (its content path).
            paths = [p for r in (rec, *discarded) for p in (r.path, r.gguf_model_path, r.content_path) if p]
            # Files under the model's path that belong to other models (the same path, or one nested in it) stay.
            orphaned: dict[str, set[str]] = {}
            for path in dict.fromkeys(paths):
                others = await catalog.paths_at_or_under(conn, path)
                if path not in others:
                    orphaned[path] = others
            if orphaned:
                # Fail before committing when the files cannot be removed at all (no bucket configured).
                self.ctx.objects.check_configured()
            scheduled = [(await self.removals.schedule(conn, p, keep), p, keep) for p, keep in orphaned.items()]
        errors = [await self.removals.run(removal_id, path, keep) for removal_id, path, keep in scheduled]
        # What failed now is retried by the server's housekeeping; the answer says so.
        error = next((e for e in errors if e), "")
        return DeleteModelResponse(
            id=req.id, object="model", deleted=True, files_removal_pending=bool(error), files_removal_error=error
        )

    async def _check_source(self, conn: Conn, who: Identity, kind: Kind, source: int, where: str) -> None:
        """A load from a bucket copies only what the caller may read (see tenancy.check_bucket_read): a fine-tuned
        model's `s3://` location, or a base model's key in the loaders' source bucket."""
        if source != SourceRepository.OBJECT_STORE:
            return
        if kind is Kind.FINE_TUNED:
            bucket, _, key = where.removeprefix("s3://").partition("/")
            await tenancy.check_bucket_read(self.ctx, conn, who, bucket, key, "model_file_location")
        elif self.ctx.mirror is not None:
            bucket, prefix = self.ctx.mirror
            key = f"{prefix}/{where}" if prefix else where
            await tenancy.check_bucket_read(self.ctx, conn, who, bucket, key, "id", configured=True)

    async def _check_storage(self, conn: Conn, who: Identity, model_id: str) -> None:
        """Refuse a base model whose files would overwrite, contain or sit inside another model's files."""
        directory = ids.storage_directory(model_id)
        root = await self.ctx.base_model_root(conn, who.tenant_id)
        clash = await catalog.storage_clash(conn, who.tenant_id, model_id, directory, root)
        if clash is not None:
            # Another tenant's ids are not for this caller to see.
            other = f'model "{clash.model_id}"' if clash.tenant_id == who.tenant_id else "a model of another tenant"
            raise AlreadyExists(
                f'model "{model_id}" would be stored in {directory!r}, where its files would overwrite, contain or '
                f"sit inside those of {other}; choose another id"
            )

    async def update_model(self, who: Identity, req: UpdateModelRequest) -> Model:
        access.require(who, Role.WRITER, "updating models")
        if req.model is None:
            raise InvalidArgument("model is required")
        validate.check_id(req.model.id, "model.id")
        paths = model_config.normalize_mask(list(req.update_mask.paths) if req.update_mask is not None else [])
        model_config.check_mask(paths)
        async with self.ctx.db.transaction() as conn:
            rec = await find_visible(conn, who, req.model.id, True, who.project_id)
            access.require_owner(who, rec, "updating")
            config = model_config.apply_mask(model_config.decode(rec.config), req.model.config, paths)
            rec = await catalog.update_model(conn, rec, {"config": model_config.encode(config)}, self.ctx.now())
        return to_model(rec)

    async def retry_model(self, who: Identity, req: RetryModelRequest) -> Model:
        """A FAILED model back to REQUESTED with a fresh set of attempts; its failures stay in its attempt log."""
        async with self._changing(who, req.id, "retrying") as (conn, rec):
            if rec.kind is Kind.FINE_TUNED and not rec.model_file_location:
                raise FailedPrecondition(
                    f'model "{req.id}" was registered by a fine-tuning job, not requested from a location: there is '
                    "nothing to load it from"
                )
            where = rec.model_file_location if rec.kind is Kind.FINE_TUNED else rec.model_id
            await self._check_source(conn, who, rec.kind, rec.source_repository, where)  # the rules may have changed
            rec = await loading.retry_failed(conn, rec, self.ctx.clock())
        return to_model(rec)

    async def activate_model(self, who: Identity, req: ActivateModelRequest) -> ActivateModelResponse:
        await self._set_activation(who, req.id, Activation.ACTIVE)
        return ActivateModelResponse()

    async def deactivate_model(self, who: Identity, req: DeactivateModelRequest) -> DeactivateModelResponse:
        await self._set_activation(who, req.id, Activation.INACTIVE)
        return DeactivateModelResponse()

    async def _set_activation(self, who: Identity, model_id: str, status: int) -> None:
        # Writers may (de)activate the tenant's global models too: activation only decides what inference engines
        # keep loaded, and llmariner's gateway activates a model on demand for whoever calls it.
        access.require(who, Role.WRITER, "activating and deactivating models")
        validate.check_id(model_id)
        async with self.ctx.db.transaction() as conn:
            rec = await find_visible(conn, who, model_id, False, who.project_id)
            if rec.activation_status != status:
                await catalog.update_model(conn, rec, {"activation_status": status}, self.ctx.now())
