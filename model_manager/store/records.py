"""Plain records the store hands to the service, so nothing above the store sees SQLAlchemy rows."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import ColumnElement, Table

from model_manager.core import files
from model_manager.core.files import StoredFile
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


class FailedAttempt(NamedTuple):
    attempt: int
    reason: str
    at: int  # unix seconds


@functools.lru_cache(maxsize=256)
def _decode_attempts(raw: str) -> tuple[FailedAttempt, ...]:
    if raw == "[]":
        return ()
    return tuple(FailedAttempt(int(a["attempt"]), str(a["reason"]), int(a["at"])) for a in json.loads(raw))


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
    progress_bytes_done: int = 0
    progress_bytes_total: int = 0
    progress_files_done: int = 0
    progress_files_total: int = 0
    attempt_floor: int = 0
    attempt_log: tuple[FailedAttempt, ...] = ()
    metadata: str = ""  # JSON of ModelMetadata's fields; "" when unknown
    metadata_architecture: str = ""  # lower-cased, for listing filters
    metadata_quantization: str = ""
    aliased: bool = False  # an alias names this model (its names are looked up then)
    aliases: tuple[str, ...] = ()  # not a column: the names of the aliases the caller sees, filled by the service
    # base models only
    formats: tuple[int, ...] = ()
    gguf_model_path: str = ""
    requested_revision: str = ""
    revision: str = ""
    loaded_by: int | None = None
    content_key: str = ""  # what the files are: models of a tenant with the same key share them
    content_path: str = ""  # where a load of this model writes, while it loads or after it failed
    convert_gguf: str = ""  # the GGUF tensor type a requested model is converted to once loaded ("" for none)
    file_rule: str = ""  # which of its source's files a requested model's load stores (FileRule.encode)
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

    @property
    def attempts_used(self) -> int:
        """Claims since the model was requested or last retried (what loading.maxAttempts bounds)."""
        return self.attempt - self.attempt_floor


class ModelColumns(TypedDict, total=False):
    """Column values of a model row by name, as the service writes them through the store (insert_model,
    update_model, loading transitions): a misspelt column is a type error. A value may be an SQL expression that
    the database computes in the same statement (the attempt log grows that way)."""

    tenant_id: str
    project_id: str
    model_id: str
    path: str
    source_repository: int
    loading_status: int
    loading_failure_reason: str | ColumnElement[str]
    loading_status_message: str | ColumnElement[str]
    lease_holder: str | None
    lease_expires_at: float | None
    attempt: int | ColumnElement[int]
    activation_status: int
    config: bytes | None
    files: str
    created_at: int
    updated_at: int
    claimable_at: float | None
    progress_bytes_done: int
    progress_bytes_total: int
    progress_files_done: int
    progress_files_total: int
    attempt_floor: int | ColumnElement[int]
    attempt_log: str | ColumnElement[str]
    metadata: str
    metadata_architecture: str
    metadata_quantization: str
    aliased: bool
    # base models only
    formats: str
    gguf_model_path: str
    requested_revision: str
    revision: str
    loaded_by: int | None
    content_key: str
    content_path: str
    convert_gguf: str
    file_rule: str
    # fine-tuned models only
    organization_id: str
    base_model_id: str
    suffix: str
    model_file_location: str
    is_published: bool
    adapter: int
    quantization: int


def encode_formats(formats: Sequence[int]) -> str:
    return ",".join(str(int(f)) for f in formats)


@functools.lru_cache(maxsize=256)
def _decode_formats(raw: str) -> tuple[int, ...]:
    return tuple(int(f) for f in raw.split(",") if f)  # few distinct values: decoded once each


# Columns stored in another form than the record's; a dict lookup, not an Enum call, for the enums (an Enum call
# showed in listing profiles).
_DECODE: dict[str, Callable[[Any], Any]] = {
    "formats": _decode_formats,
    "files": files.decode,
    "loading_status": {s.value: s for s in LoadingStatus}.__getitem__,
    "activation_status": {a.value: a for a in Activation}.__getitem__,
    "is_published": bool,
    "attempt_log": _decode_attempts,
}


@functools.cache
def _builder(kind: Kind, names: tuple[str, ...]) -> Callable[[Sequence[Any]], ModelRecord]:
    """A function that turns a row laid out as `names` into a record of `kind`, written once per layout.

    It is generated (as the standard library's dataclasses and namedtuple write their methods): one call with each
    field's expression inlined (`row[3]`, `decode_formats(row[5])`, a default for the other table's fields). A
    loop over the fields cost a fifth of a cold listing page."""
    own = {c.name for c in kind.table.c}
    env: dict[str, Any] = {"ModelRecord": ModelRecord, "kind": kind}
    args = ["kind"]
    for f in fields(ModelRecord)[1:]:
        if f.name in own and f.name in names:
            expr = f"row[{names.index(f.name)}]"
            if f.name in _DECODE:
                env[f"decode_{f.name}"] = _DECODE[f.name]
                expr = f"decode_{f.name}({expr})"
        elif f.default is MISSING:
            raise TypeError(f"table {kind.table.name} has no column {f.name}, which ModelRecord requires")
        else:
            env[f"default_{f.name}"] = f.default
            expr = f"default_{f.name}"
        args.append(expr)
    exec(f"def build(row):\n    return ModelRecord({', '.join(args)})\n", env)  # our own text, from field names
    return env["build"]  # type: ignore[no-any-return]


@functools.cache
def _table_columns(kind: Kind) -> tuple[str, ...]:
    return tuple(c.name for c in kind.table.c)


def to_record(kind: Kind, row: Sequence[Any], names: tuple[str, ...] | None = None) -> ModelRecord:
    """A row of `select(table)` (or `RETURNING` all columns) as a record; or a row laid out as `names`."""
    return _builder(kind, names or _table_columns(kind))(row)
