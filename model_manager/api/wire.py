"""Models in each front's wire form, written straight from their records.

The read paths (get a model, list a page, the worker's listing) skip the betterproto message: building one cost
about 3 µs a model, writing it as JSON through the descriptor walk 4 µs more, and betterproto's protobuf encoder
about 75 µs. Here a record becomes the JSON document orjson writes, or a message of Google's protobuf runtime
(upb, in C), which encodes it in about 2 µs. `service.convert.to_model` stays the one definition of what a model
says; the tests hold both forms to it, field for field.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from google.protobuf import message_factory

from model_manager.api.json_codec import to_json
from model_manager.proto.llmariner.models.server.v1 import (
    ActivationStatus,
    ListModelsResponse,
    Model,
    ModelFormat,
    ModelLoadingStatus,
    Project,
    SourceRepository,
)
from model_manager.service import model_config
from model_manager.service.cache import Encoding
from model_manager.service.convert import metadata_fields
from model_manager.store.listing import Page
from model_manager.store.records import Kind, ModelRecord


def _names(enum_cls: Any) -> dict[int, str]:
    return enum_cls.betterproto_value_to_renamed_proto_names()  # type: ignore[no-any-return]


_LOADING = _names(ModelLoadingStatus)
_SOURCE = _names(SourceRepository)
_FORMAT = _names(ModelFormat)
_ACTIVATION = _names(ActivationStatus)


@functools.lru_cache(maxsize=1024)
def _config_json(blob: bytes | None) -> dict[str, Any]:
    """Most models share one of a few configs: each is turned into JSON once. Shared, so never changed."""
    return to_json(model_config.decode_shared(blob))


@functools.lru_cache(maxsize=1024)
def _project_json(project_id: str) -> dict[str, Any]:
    return to_json(Project(id=project_id))


def json_model(rec: ModelRecord) -> dict[str, Any]:
    """The REST JSON of a model: what `to_json(to_model(rec))` writes, key for key."""
    is_base = rec.kind is Kind.BASE
    out: dict[str, Any] = {
        "id": rec.model_id,
        "created": rec.created_at,
        "object": "model",
        "owned_by": "system" if is_base else "user",
        "loading_status": _LOADING.get(rec.loading_status, rec.loading_status),
        "source_repository": _SOURCE.get(rec.source_repository, rec.source_repository),
        "loading_failure_reason": rec.loading_failure_reason,
        "loading_status_message": rec.loading_status_message,
        "formats": [_FORMAT.get(f, f) for f in rec.formats],
        "is_base_model": is_base,
        "base_model_id": rec.base_model_id,
        "activation_status": _ACTIVATION.get(rec.activation_status, rec.activation_status),
        "config": _config_json(rec.config),
    }
    if rec.project_id:
        out["project"] = _project_json(rec.project_id)
    out["revision"] = rec.revision
    out["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in rec.files]
    if rec.progress_bytes_total or rec.progress_files_total:
        out["loading_progress"] = {
            "bytes_done": rec.progress_bytes_done,
            "bytes_total": rec.progress_bytes_total,
            "files_done": rec.progress_files_done,
            "files_total": rec.progress_files_total,
        }
    out["loading_attempts"] = [{"attempt": a.attempt, "reason": a.reason, "failed_at": a.at} for a in rec.attempt_log]
    if rec.metadata:
        out["metadata"] = metadata_fields(rec.metadata)
    return out


def _json_page(page: Page) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [json_model(r) for r in page.records],
            "has_more": page.has_more,
            "total_items": page.total,
        }
    )


JSON = Encoding("json", lambda rec: orjson.dumps(json_model(rec)), _json_page)

_DEFAULT_CONFIG = model_config.encode(model_config.default_config())
_Model = message_factory.GetMessageClass(Model.DESCRIPTOR)
_List = message_factory.GetMessageClass(ListModelsResponse.DESCRIPTOR)


def proto_model(rec: ModelRecord) -> Any:
    """The protobuf message of a model (upb): what `to_model(rec)` holds, field for field."""
    is_base = rec.kind is Kind.BASE
    msg = _Model(
        id=rec.model_id,
        created=rec.created_at,
        object="model",
        owned_by="system" if is_base else "user",
        loading_status=rec.loading_status,
        source_repository=rec.source_repository,
        loading_failure_reason=rec.loading_failure_reason,
        loading_status_message=rec.loading_status_message,
        formats=rec.formats,
        is_base_model=is_base,
        base_model_id=rec.base_model_id,
        activation_status=rec.activation_status,
        revision=rec.revision,
    )
    # The stored config is the ModelConfig's own encoding; a row without one gets the default config.
    msg.config.SetInParent()
    msg.config.MergeFromString(rec.config or _DEFAULT_CONFIG)
    if rec.project_id:
        msg.project.id = rec.project_id
    for f in rec.files:
        msg.files.add(path=f.path, size=f.size, sha256=f.sha256)
    if rec.progress_bytes_total or rec.progress_files_total:
        p = msg.loading_progress
        p.bytes_done, p.bytes_total = rec.progress_bytes_done, rec.progress_bytes_total
        p.files_done, p.files_total = rec.progress_files_done, rec.progress_files_total
    for a in rec.attempt_log:
        msg.loading_attempts.add(attempt=a.attempt, reason=a.reason, failed_at=a.at)
    if rec.metadata:
        msg.metadata.SetInParent()
        for name, value in metadata_fields(rec.metadata).items():
            setattr(msg.metadata, name, value)
    return msg


def _proto_page(page: Page) -> bytes:
    msg = _List(object="list", has_more=page.has_more, total_items=page.total)
    msg.data.extend(proto_model(r) for r in page.records)
    return msg.SerializeToString()  # type: ignore[no-any-return]


PROTO = Encoding("proto", lambda rec: proto_model(rec).SerializeToString(), _proto_page)
