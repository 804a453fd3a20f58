"""Store records to API messages."""

from __future__ import annotations

import functools
import json
from typing import Any

from model_manager.core import files
from model_manager.proto.llmariner.models.server.v1 import (
    ActivationStatus,
    ListModelsResponse,
    LoadingAttempt,
    LoadingProgress,
    Model,
    ModelFile,
    ModelFormat,
    ModelLoadingStatus,
    ModelMetadata,
    Project,
    SourceRepository,
    StoredContent,
)
from model_manager.service import model_config
from model_manager.store.listing import Page
from model_manager.store.records import Kind, ModelColumns, ModelRecord


def to_model(rec: ModelRecord) -> Model:
    is_base = rec.kind is Kind.BASE
    return Model(
        id=rec.model_id,
        created=rec.created_at,
        object="model",
        owned_by="system" if is_base else "user",
        loading_status=ModelLoadingStatus(rec.loading_status),
        source_repository=SourceRepository(rec.source_repository),
        loading_failure_reason=rec.loading_failure_reason,
        loading_status_message=rec.loading_status_message,
        formats=[ModelFormat(f) for f in rec.formats],
        is_base_model=is_base,
        base_model_id=rec.base_model_id,
        activation_status=ActivationStatus(rec.activation_status),
        config=model_config.decode_shared(rec.config),
        project=Project(id=rec.project_id) if rec.project_id else None,
        revision=rec.revision,
        files=files.to_messages(rec.files),
        loading_progress=progress_of(rec),
        loading_attempts=[LoadingAttempt(attempt=a.attempt, reason=a.reason, failed_at=a.at) for a in rec.attempt_log],
        metadata=ModelMetadata(**metadata_fields(rec.metadata)) if rec.metadata else None,
    )


@functools.lru_cache(maxsize=1024)
def metadata_fields(stored: str) -> dict[str, Any]:
    """The stored metadata's fields (few distinct values: decoded once each). Shared, so never changed."""
    return dict(json.loads(stored))


def stored_metadata(reported: ModelMetadata | None) -> ModelColumns:
    """The column value for metadata a loader reported; nothing to store when it sent none."""
    if reported is None:
        return {}
    fields = {
        "architecture": reported.architecture,
        "parameter_count": reported.parameter_count,
        "quantization": reported.quantization,
        "dtype": reported.dtype,
        "context_length": reported.context_length,
        "total_bytes": reported.total_bytes,
        "license": reported.license,
    }
    return {
        "metadata": json.dumps(fields, separators=(",", ":")),
        "metadata_architecture": reported.architecture.lower()[:256],
        "metadata_quantization": reported.quantization.lower()[:64],
    }


def progress_of(rec: ModelRecord) -> LoadingProgress | None:
    """The load's progress numbers; None (unset) until a loader has reported any."""
    if not (rec.progress_bytes_total or rec.progress_files_total):
        return None
    return LoadingProgress(
        bytes_done=rec.progress_bytes_done,
        bytes_total=rec.progress_bytes_total,
        files_done=rec.progress_files_done,
        files_total=rec.progress_files_total,
    )


def to_response(page: Page) -> ListModelsResponse:
    return ListModelsResponse(
        object="list", data=[to_model(r) for r in page.records], has_more=page.has_more, total_items=page.total
    )


def stored_files(reported: list[ModelFile]) -> str:
    """The JSON column value for files reported by a loader."""
    return files.encode(files.from_messages(reported))


def stored_content(rec: ModelRecord) -> StoredContent:
    """A loaded base model as FindStoredContent answers it: where its files are and what they are."""
    return StoredContent(
        id=rec.model_id,
        path=rec.path,
        gguf_model_path=rec.gguf_model_path,
        formats=[ModelFormat(f) for f in rec.formats],
        files=files.to_messages(rec.files),
        metadata=ModelMetadata(**metadata_fields(rec.metadata)) if rec.metadata else None,
    )
