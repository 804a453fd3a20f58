"""Table definitions. Alembic migrations must produce exactly this schema (a test compares them).

Activation status and model config live on the model rows rather than in side tables: the listing order is
(activation, kind, id), and an index on (tenant_id, activation_status, model_id) makes every page one index range
scan. Side tables would force a join whose cost grows with the catalogue.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ID_LEN = 256


def _loading_columns() -> list[Column]:  # type: ignore[type-arg]
    """Columns shared by both model tables: loading state, lease, activation, config and timestamps."""
    return [
        Column("source_repository", Integer, nullable=False, server_default="0"),
        Column("loading_status", Integer, nullable=False, server_default="0"),
        Column("loading_failure_reason", Text, nullable=False, server_default=""),
        Column("loading_status_message", Text, nullable=False, server_default=""),
        Column("lease_holder", String(256), nullable=True),
        Column("lease_expires_at", Float, nullable=True),
        Column("attempt", Integer, nullable=False, server_default="0"),
        Column("activation_status", Integer, nullable=False, server_default="2"),
        Column("config", LargeBinary, nullable=True),
        # JSON list of {"path", "size", "sha256"}: the files the loader stored and verified.
        Column("files", Text, nullable=False, server_default="[]"),
        Column("created_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
        # A model given back after a transient failure is not claimed again before this time (growing delays).
        Column("claimable_at", Float, nullable=True),
        # The load's progress as its loader last reported it (migration 0007).
        Column("progress_bytes_done", BigInteger, nullable=False, server_default="0"),
        Column("progress_bytes_total", BigInteger, nullable=False, server_default="0"),
        Column("progress_files_done", BigInteger, nullable=False, server_default="0"),
        Column("progress_files_total", BigInteger, nullable=False, server_default="0"),
        # Attempts a retry wrote off (the attempts used are attempt - attempt_floor), and a JSON list of
        # {"attempt", "reason", "at"} for every attempt that failed (migration 0008).
        Column("attempt_floor", Integer, nullable=False, server_default="0"),
        Column("attempt_log", Text, nullable=False, server_default="[]"),
        # What the model is, read by its loader from the files' headers: ModelMetadata's fields as a JSON object;
        # "" until a loader that reads them loaded it (migration 0009).
        Column("metadata", Text, nullable=False, server_default=""),
        # Lower-cased copies of the two metadata fields listings filter on (?architecture=, ?quantization=).
        Column("metadata_architecture", String(256), nullable=False, server_default=""),
        Column("metadata_quantization", String(64), nullable=False, server_default=""),
        # A number no other state of any model row ever had, set by a trigger at every insert and update
        # (migration 0013): the answer for a model id is valid while the versions of its rows stand.
        Column("version", BigInteger, nullable=False, server_default="0"),
        # Whether an alias names this model (migration 0015): only then does a read look its aliases up.
        Column("aliased", Boolean, nullable=False, server_default="0"),
    ]


base_models = Table(
    "base_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    # "" for a model visible to the whole tenant; a project id for a project-scoped model.
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("model_id", String(ID_LEN), nullable=False),
    Column("path", Text, nullable=False, server_default=""),
    Column("formats", String(64), nullable=False, server_default=""),
    Column("gguf_model_path", Text, nullable=False, server_default=""),
    Column("requested_revision", String(ID_LEN), nullable=False, server_default=""),
    Column("revision", String(ID_LEN), nullable=False, server_default=""),
    # The requested row (its id) whose load registered this model, until that load completes: deleting the
    # requested model while it loads discards what its load registered.
    Column("loaded_by", Integer, nullable=True),
    # What the files are (source kind and resolved revision): loaded models of a tenant with the same key share
    # one copy. "" when unknown (migration 0010).
    Column("content_key", String(512), nullable=False, server_default=""),
    # While a model loads (and after its load failed, for a retry to resume): the directory its loader writes to.
    # Deleting another model keeps the files a load of the same content is writing.
    Column("content_path", Text, nullable=False, server_default=""),
    # On a requested model: the GGUF tensor type its load converts it to once the files are stored ("" for none).
    Column("convert_gguf", String(16), nullable=False, server_default=""),
    # On a requested model: which of its source's files to store (core/file_rule.py; "" for the default).
    Column("file_rule", Text, nullable=False, server_default=""),
    *_loading_columns(),
    UniqueConstraint("tenant_id", "model_id", "project_id", name="uq_base_models_tenant_model_project"),
    Index("ix_base_models_listing", "tenant_id", "activation_status", "model_id"),
    Index("ix_base_models_claim", "tenant_id", "loading_status", "created_at"),
    Index("ix_base_models_project", "tenant_id", "project_id", "model_id"),
    Index("ix_base_models_content", "tenant_id", "content_key"),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("organization_id", String(ID_LEN), nullable=False, server_default=""),
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("model_id", String(ID_LEN), nullable=False),
    Column("base_model_id", String(ID_LEN), nullable=False, server_default=""),
    Column("suffix", String(64), nullable=False, server_default=""),
    Column("path", Text, nullable=False, server_default=""),
    Column("model_file_location", Text, nullable=False, server_default=""),
    Column("is_published", Boolean, nullable=False, server_default="0"),
    Column("adapter", Integer, nullable=False, server_default="0"),
    Column("quantization", Integer, nullable=False, server_default="0"),
    *_loading_columns(),
    UniqueConstraint("tenant_id", "model_id", name="uq_models_tenant_model"),
    Index("ix_models_listing", "tenant_id", "project_id", "activation_status", "model_id"),
    Index("ix_models_claim", "tenant_id", "loading_status", "created_at"),
)

hf_model_repos = Table(
    "hf_model_repos",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("name", String(ID_LEN), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name", "project_id", name="uq_hf_model_repos_tenant_name_project"),
)

storage_configs = Table(
    "storage_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("path_prefix", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", name="uq_storage_configs_tenant"),
)

# File removals a delete could not finish (the object store was unreachable): retried by the server until done.
pending_deletions = Table(
    "pending_deletions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    # JSON list of paths under `path` that belong to other models and stay.
    Column("keep", Text, nullable=False, server_default="[]"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
)

# Maintained by triggers (migration 0003): how many rows each (tenant, project, kind, loaded, published) has, so
# total_items is a handful of key lookups instead of a count over the catalogue. kind: 0 base, 1 fine-tuned.
model_counts = Table(
    "model_counts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("project_id", String(ID_LEN), primary_key=True),
    Column("kind", Integer, primary_key=True),
    Column("loaded", Integer, primary_key=True),
    Column("published", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# API keys (auth.enable). Only a SHA-256 of each key's secret is kept; the key itself is shown once, at creation.
# Public roles carry a tenant, organization and project; worker keys a tenant and an optional cluster name.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("organization_id", String(ID_LEN), nullable=False, server_default=""),
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("role", String(16), nullable=False),
    Column("cluster", String(ID_LEN), nullable=False, server_default=""),
    Column("name", String(ID_LEN), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    UniqueConstraint("key_id", name="uq_api_keys_key_id"),
    Index("ix_api_keys_tenant", "tenant_id", "project_id"),
)

# Per tenant, bumped by triggers (migration 0013) in every transaction that writes its models: `loaded` when the
# write may change a listing of loaded models, `changed` always. Cached listings are valid while they stand.
tenant_versions = Table(
    "tenant_versions",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("loaded", BigInteger, nullable=False),
    Column("changed", BigInteger, nullable=False),
)

# Aliases (migration 0015): stable names for models, one namespace per tenant, never equal to a model id. An alias
# of a project has its project_id; one of the whole tenant has "".
aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("name", String(ID_LEN), nullable=False),
    Column("model_id", String(ID_LEN), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_aliases_tenant_name"),
    Index("ix_aliases_model", "tenant_id", "model_id"),
)

# Every change of an alias, for its history (removed with the alias).
alias_changes = Table(
    "alias_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(ID_LEN), nullable=False),
    Column("from_model_id", String(ID_LEN), nullable=False, server_default=""),
    Column("to_model_id", String(ID_LEN), nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Column("changed_by", String(32), nullable=False, server_default=""),
    Index("ix_alias_changes_alias", "tenant_id", "name", "id"),
)

# Pushes of models to OCI registries (migration 0016): progress while one runs, the manifest digest once it is done.
model_pushes = Table(
    "model_pushes",
    metadata,
    Column("push_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("project_id", String(ID_LEN), nullable=False, server_default=""),
    Column("model_id", String(ID_LEN), nullable=False),
    Column("destination", String(600), nullable=False),
    Column("status", Integer, nullable=False),
    Column("bytes_total", BigInteger, nullable=False, server_default="0"),
    Column("bytes_done", BigInteger, nullable=False, server_default="0"),
    Column("bytes_skipped", BigInteger, nullable=False, server_default="0"),
    Column("files_total", Integer, nullable=False, server_default="0"),
    Column("files_done", Integer, nullable=False, server_default="0"),
    Column("manifest_digest", String(80), nullable=False, server_default=""),
    Column("failure_reason", Text, nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_model_pushes_target", "tenant_id", "destination", "status"),
)
