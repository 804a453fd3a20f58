"""What a Model says, defined once (`model_fields`), and the messages the service answers with.

`model_fields` gives every field of the Model message a record holds, in protobuf's Python form. The encodings
derive from it and say nothing of their own: `proto_model` hands it to Google's protobuf runtime (upb, in C), which
builds and encodes a model in about 4 µs; `to_model` parses those bytes into the betterproto message the write
paths return; the REST JSON (`api/wire.py`) writes the same dict with enums named, through converters read off the
Model descriptor at import. A field added to the proto is added here, and nowhere else.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from google.protobuf import message_factory

from model_manager.core import files
from model_manager.proto.llmariner.models.server.v1 import (
    ListModelsResponse,
    Model,
    ModelFile,
    ModelFormat,
    ModelMetadata,
    StoredContent,
)
from model_manager.service import model_config
from model_manager.store.listing import Page
from model_manager.store.records import Kind, ModelColumns, ModelRecord


def model_fields(rec: ModelRecord) -> dict[str, Any]:
    """The Model a record is, field by field in the message's order: enums as numbers, messages as dicts of all
    their fields (absent when unset; JSON writes every field of a message it writes), repeated fields as lists.
    One exception: `config` is the ModelConfig's stored encoding (None: the default config), which each encoding
    writes its own way without decoding it per model."""
    is_base = rec.kind is Kind.BASE
    fields: dict[str, Any] = {
        "id": rec.model_id,
        "created": rec.created_at,
        "object": "model",
        "owned_by": "system" if is_base else "user",
        "loading_status": rec.loading_status,
        "source_repository": rec.source_repository,
        "loading_failure_reason": rec.loading_failure_reason,
        "loading_status_message": rec.loading_status_message,
        "formats": list(rec.formats),
        "is_base_model": is_base,
        "base_model_id": rec.base_model_id,
        "activation_status": rec.activation_status,
        "config": rec.config,
    }
    if rec.project_id:
        fields["project"] = {"id": rec.project_id, "assignments": [], "kubernetes_namespace": ""}
    fields["revision"] = rec.revision
    fields["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in rec.files]
    if rec.progress_bytes_total or rec.progress_files_total:  # unset until a loader has reported any
        fields["loading_progress"] = {
            "bytes_done": rec.progress_bytes_done,
            "bytes_total": rec.progress_bytes_total,
            "files_done": rec.progress_files_done,
            "files_total": rec.progress_files_total,
        }
    fields["loading_attempts"] = [
        {"attempt": a.attempt, "reason": a.reason, "failed_at": a.at} for a in rec.attempt_log
    ]
    if rec.metadata:
        fields["metadata"] = metadata_fields(rec.metadata)
    fields["aliases"] = list(rec.aliases)
    return fields


_DEFAULT_CONFIG = model_config.encode(model_config.default_config())
_Model = message_factory.GetMessageClass(Model.DESCRIPTOR)
_List = message_factory.GetMessageClass(ListModelsResponse.DESCRIPTOR)
_Metadata = message_factory.GetMessageClass(ModelMetadata.DESCRIPTOR)


def proto_model(rec: ModelRecord) -> Any:
    """The model as a message of Google's protobuf runtime (upb)."""
    fields = model_fields(rec)
    config = fields.pop("config")
    msg = _Model(**fields)
    msg.config.MergeFromString(config or _DEFAULT_CONFIG)
    return msg


def proto_page(page: Page) -> bytes:
    msg = _List(object="list", has_more=page.has_more, total_items=page.total)
    msg.data.extend(proto_model(r) for r in page.records)
    return msg.SerializeToString()  # type: ignore[no-any-return]


def to_model(rec: ModelRecord) -> Model:
    """The betterproto message of a model, for the answers that are not on a read path (writes, the worker's
    GetModel): parsed from the one encoding, so it cannot say anything else."""
    return Model.parse(proto_model(rec).SerializeToString())


_METADATA_DEFAULTS = {f.name: f.default_value for f in ModelMetadata.DESCRIPTOR.fields}


@functools.lru_cache(maxsize=1024)
def metadata_fields(stored: str) -> dict[str, Any]:
    """The stored metadata's fields, those it lacks (stored before they existed) at their defaults: few distinct
    values, decoded once each. Shared, so never changed."""
    return {**_METADATA_DEFAULTS, **json.loads(stored)}


def stored_metadata(reported: ModelMetadata | None) -> ModelColumns:
    """The column value for metadata a loader reported; nothing to store when it sent none."""
    if reported is None:
        return {}
    fields = {f.name: _plain(getattr(reported, f.name)) for f in ModelMetadata.DESCRIPTOR.fields}
    return {
        "metadata": json.dumps(fields, separators=(",", ":")),
        "metadata_architecture": reported.architecture.lower()[:256],
        "metadata_quantization": reported.quantization.lower()[:64],
    }


def _plain(value: Any) -> Any:
    """A field's value as JSON keeps it: messages as dicts of all their fields, lists item by item."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    descriptor = getattr(value, "DESCRIPTOR", None)
    if descriptor is not None:
        return {f.name: _plain(getattr(value, f.name)) for f in descriptor.fields}
    return value


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
        metadata=ModelMetadata.parse(_Metadata(**metadata_fields(rec.metadata)).SerializeToString())
        if rec.metadata
        else None,
    )
