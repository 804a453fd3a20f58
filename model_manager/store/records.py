"""Plain records the store hands to the service, so nothing above the store sees SQLAlchemy rows."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Table

from model_manager import files
from model_manager.files import StoredFile
from model_manager.store.tables import base_models, models

# Numeric values match the protobuf enums; the store keeps them as plain integers.
REQUESTED, LOADING, SUCCEEDED, FAILED = 1, 2, 3, 4
LOADED_STATUSES = (0, SUCCEEDED)  # 0 (unspecified) marks rows written by older versions: loaded
ACTIVE, INACTIVE = 1, 2


class Kind(enum.Enum):
    BASE = "base"
    FINE_TUNED = "fine_tuned"

    @property
    def table(self) -> Table:
        return base_models if self is Kind.BASE else models


@dataclass(frozen=True)
class ModelRecord:
    """A row of either model table; fine-tuned-only fields keep their defaults on base models."""

    kind: Kind
    tenant_id: str
    project_id: str
    model_id: str
    path: str
    source_repository: int
    loading_status: int
    loading_failure_reason: str
    loading_status_message: str
    lease_holder: str | None
    lease_expires_at: float | None
    attempt: int
    activation_status: int
    config: bytes | None
    created_at: int
    updated_at: int
    files: tuple[StoredFile, ...] = ()
    # base models only
    formats: tuple[int, ...] = ()
    gguf_model_path: str = ""
    requested_revision: str = ""
    revision: str = ""
    # fine-tuned models only
    organization_id: str = ""
    base_model_id: str = ""
    suffix: str = ""
    model_file_location: str = ""
    is_published: bool = False
    adapter: int = 0
    quantization: int = 0

    @property
    def is_loaded(self) -> bool:
        return self.loading_status in LOADED_STATUSES


_FIELDS = {f.name for f in fields(ModelRecord)}


def encode_formats(formats: Sequence[int]) -> str:
    return ",".join(str(int(f)) for f in formats)


def to_record(kind: Kind, row: Any) -> ModelRecord:
    values = {k: v for k, v in row._mapping.items() if k in _FIELDS}
    if "formats" in values:
        values["formats"] = tuple(int(f) for f in values["formats"].split(",") if f)
    if "files" in values:
        values["files"] = files.decode(values["files"])
    if "is_published" in values:
        values["is_published"] = bool(values["is_published"])
    return ModelRecord(kind=kind, **values)
