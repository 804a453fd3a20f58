"""Plain records the store hands to the service, so nothing above the store sees SQLAlchemy rows."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Table

from model_manager import files
from model_manager.files import StoredFile
from model_manager.store.tables import base_models, models


class LoadingStatus(enum.IntEnum):
    """Stored as integers whose values match the protobuf enum ModelLoadingStatus."""

    UNSPECIFIED = 0  # rows written by older versions: loaded
    REQUESTED = 1
    LOADING = 2
    SUCCEEDED = 3
    FAILED = 4


LOADED_STATUSES = (LoadingStatus.UNSPECIFIED, LoadingStatus.SUCCEEDED)


class Activation(enum.IntEnum):
    """Stored as integers whose values match the protobuf enum ActivationStatus."""

    ACTIVE = 1
    INACTIVE = 2


class Kind(enum.Enum):
    BASE = "base"
    FINE_TUNED = "fine_tuned"

    @property
    def table(self) -> Table:
        return base_models if self is Kind.BASE else models


@dataclass(slots=True)
class ModelRecord:
    """A row of either model table; fine-tuned-only fields keep their defaults on base models.

    Read-only by convention, not frozen: a frozen dataclass sets each of its 30 fields through object.__setattr__,
    which cost a fifth of a cold listing page."""

    kind: Kind
    id: int  # the row's key
    tenant_id: str
    project_id: str
    model_id: str
    path: str
    source_repository: int
    loading_status: LoadingStatus
    loading_failure_reason: str
    loading_status_message: str
    lease_holder: str | None
    lease_expires_at: float | None
    attempt: int
    activation_status: Activation
    config: bytes | None
    created_at: int
    updated_at: int
    files: tuple[StoredFile, ...] = ()
    # base models only
    formats: tuple[int, ...] = ()
    gguf_model_path: str = ""
    requested_revision: str = ""
    revision: str = ""
    loaded_by: int | None = None
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


@functools.cache
def _columns(kind: Kind) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The table's column names in select order, and those the record does not carry (claimable_at)."""
    names = tuple(c.name for c in kind.table.c)
    return names, tuple(n for n in names if n not in _FIELDS)


def to_record(kind: Kind, row: Any) -> ModelRecord:
    """A row of `select(table)` (or `RETURNING` all columns) as a record."""
    names, extra = _columns(kind)
    values = dict(zip(names, row, strict=True))
    for name in extra:
        del values[name]
    if "formats" in values:
        values["formats"] = tuple(int(f) for f in values["formats"].split(",") if f)
    if "files" in values:
        values["files"] = files.decode(values["files"])
    values["loading_status"] = LoadingStatus(values["loading_status"])
    values["activation_status"] = Activation(values["activation_status"])
    if "is_published" in values:
        values["is_published"] = bool(values["is_published"])
    return ModelRecord(kind=kind, **values)
