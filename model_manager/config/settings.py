"""Every configuration key, declared once: YAML path, type, default, check and meaning (see schema.py).

Keys are camelCase, as in llmariner's model-manager, so its server and loader files keep working. The reference
table in docs/configuration.md is generated from these declarations (`make docs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from model_manager.config.schema import (
    PORT,
    Bool,
    ConfigError,
    Duration,
    Int,
    ListOf,
    Section,
    Settings,
    Str,
    StrList,
    setting,
)
from model_manager.core import ids, logs, oci_ref

MIB = 1024 * 1024
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DOWNLOADER_KINDS = ("huggingFace", "s3", "ollama")


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig(Settings):
    host: str = setting("host", Str(), doc="PostgreSQL host", required=True, example="postgres")
    port: int = setting("port", PORT, 5432, "PostgreSQL port")
    username: str = setting("username", Str(), "postgres", "PostgreSQL user")
    database: str = setting("database", Str(), doc="database name", required=True, example="model_manager")
    password_env_name: str = setting(
        "passwordEnvName", Str(), "", "environment variable holding the password (never the password itself)"
    )
    ssl_mode: str = setting("ssl.mode", Str(SSL_MODES), "", "libpq sslmode name, passed to asyncpg")
    ssl_root_cert: str = setting(
        "ssl.rootCert", Str(), "", "CA certificate file to verify the server with (modes require, verify-*)"
    )
    connect_timeout: float = setting(
        "connectTimeout", Duration(positive=True), 5.0, "give up opening a connection after this long"
    )
    statement_timeout: float = setting(
        "statementTimeout", Duration(positive=True), 10.0, "give up waiting for one statement after this long"
    )
    pool_size: int = setting(
        "poolSize",
        Int(1, 1000),
        30,
        "connections each server keeps open; size it to the requests in flight, since every request beyond it opens "
        "and closes a connection of its own",
    )
    max_overflow: int = setting(
        "maxOverflow", Int(0, 1000), 10, "connections opened for a burst beyond poolSize, closed when done"
    )
    pool_timeout: float = setting(
        "poolTimeout", Duration(positive=True), 5.0, "give up waiting for a free pooled connection after this long"
    )
    create_database: bool = setting("createDatabase", Bool(), False, "create the database at start if it is missing")
    auto_migrate: bool = setting(
        "autoMigrate", Bool(), False, "apply migrations at start (SQLite is always migrated at start)"
    )

    IGNORED: ClassVar[Mapping[str, str]] = {"originalDatabase": "upstream's database-per-tenant setting"}

    def check(self, where: Mapping[str, str]) -> None:
        if self.ssl_root_cert and self.ssl_mode not in ("require", "verify-ca", "verify-full"):
            raise ConfigError(f"{where['ssl_root_cert']}: needs ssl.mode require, verify-ca or verify-full")


@dataclass(frozen=True, kw_only=True)
class HttpConfig(Settings):
    idle_timeout: float = setting(
        "idleTimeout",
        Duration(positive=True),
        30.0,
        "close a REST connection that has not sent a complete request (headers) for this long",
    )
    body_timeout: float = setting(
        "bodyTimeout", Duration(positive=True), 60.0, "answer 408 when a request body takes longer than this to arrive"
    )
    hf_redirect: bool = setting(
        "hfRedirect",
        Bool(),
        False,
        "on an S3 store, answer file downloads of the /hf endpoint with a redirect to a presigned URL of the "
        "object (bytes go from the bucket to the engine) instead of streaming them through the server",
    )
    hf_redirect_expiry: float = setting(
        "hfRedirectExpiry", Duration(positive=True), 300.0, "how long a presigned URL of hfRedirect stays valid"
    )


@dataclass(frozen=True, kw_only=True)
class LimitsConfig(Settings):
    request_body_bytes: int = setting(
        "requestBodyBytes", Int(1024, 64 * MIB), MIB, "largest REST request body (413 above it)"
    )
    grpc_message_bytes: int = setting(
        "grpcMessageBytes", Int(1024, 64 * MIB), 4 * MIB, "largest gRPC request message (RESOURCE_EXHAUSTED above it)"
    )
    page_size: int = setting("pageSize", Int(1, 10_000), 500, "most models one ListModels page returns")
    files_per_model: int = setting(
        "filesPerModel", Int(1), 10_000, "a model with more files is refused by the loader before it writes anything"
    )
    bytes_per_model: int = setting(
        "bytesPerModel",
        Int(1),
        4 * 1024**4,
        "a model larger than this (bytes) is refused by the loader before it writes anything",
    )


@dataclass(frozen=True, kw_only=True)
class LoadingConfig(Settings):
    lease_seconds: float = setting(
        "leaseDuration",
        Duration(positive=True),
        120.0,
        "how long a claimed model stays with its loader without a progress report",
    )
    max_attempts: int = setting(
        "maxAttempts",
        Int(minimum=1),
        5,
        "attempts at loading one model (claims whose lease expired, or loads a source or store outage stopped) "
        "before it is FAILED; with retryDelay's doubling, the default spreads them over about 7 minutes",
    )
    check_source: bool = setting(
        "checkSource",
        Bool(),
        True,
        "before accepting a base model, ask its source (the loader's downloader settings) that it exists and may be "
        "read: a missing repo, tag or file is refused at once (404), a gated one too (403)",
    )
    check_source_timeout: float = setting(
        "checkSourceTimeout",
        Duration(positive=True),
        10.0,
        "how long CreateModel waits for the source; a source that does not answer in time is accepted unchecked",
    )
    max_bytes_per_tenant: int = setting(
        "maxBytesPerTenant",
        Int(0),
        0,
        "refuse a base model whose source size would take the tenant's stored bytes past this (0: no quota); "
        "checked when the model is requested, with the size the source check found",
    )
    retry_delay: float = setting(
        "retryDelay",
        Duration(positive=True),
        30.0,
        "after a source or store outage, wait this long before the next attempt (doubling each time, at most 10m)",
    )
    allowed_source_buckets: tuple[str, ...] = setting(
        "allowedSourceBuckets",
        StrList(),
        (),
        "buckets (`name`, or `name/prefix` for part of one) that fine-tuned models may be loaded from with "
        "`model_file_location: s3://...`; none by default. The loaders read them with their own credentials, so "
        "list only buckets every tenant may read. A location in the store's own bucket is allowed only inside the "
        "caller's tenant area",
        example="[training-output, shared-models/adapters]",
    )

    def check(self, where: Mapping[str, str]) -> None:
        for i, entry in enumerate(self.allowed_source_buckets):
            bucket, _, prefix = entry.partition("/")
            if not bucket or "://" in entry or (prefix and _is_bad_path(prefix)):
                raise ConfigError(
                    f"{where['allowed_source_buckets']}[{i}]: {entry!r} must be a bucket name or bucket/prefix"
                )


@dataclass(frozen=True, kw_only=True)
class S3Config(Settings):
    endpoint_url: str = setting(
        "endpointUrl", Str(), "", "S3-compatible endpoint; empty for AWS", example="http://minio:9000"
    )
    region: str = setting("region", Str(), "", "bucket region", example="us-east-1")
    bucket: str = setting("bucket", Str(), "", "bucket name; without it, anything that needs the bucket says so")
    path_prefix: str = setting(
        "pathPrefix",
        Str(),
        "",
        "key prefix of what is stored (default `models`); every tenant but the default one stores under "
        "`tenants/<tenant>/<this>` instead, so it may not lie in `tenants/`",
    )
    base_model_path_prefix: str = setting(
        "baseModelPathPrefix", Str(), "", "prefix of base models under pathPrefix (default `base-models`)"
    )
    insecure_skip_verify: bool = setting("insecureSkipVerify", Bool(), False, "do not verify the endpoint's TLS")
    assume_role_arn: str = setting("assumeRole.roleArn", Str(), "", "role to assume through STS")
    assume_role_external_id: str = setting("assumeRole.externalId", Str(), "", "external id for assumeRole")
    part_size_mib: int = setting(
        "partSizeMiB", Int(5, 5 * 1024), 64, "multipart upload part size, MiB (S3 refuses parts under 5 MiB)"
    )
    parts_in_flight: int = setting(
        "partsInFlight", Int(1, 64), 4, "parts buffered or uploading at once, shared by every file"
    )

    @property
    def part_size(self) -> int:
        return self.part_size_mib * MIB

    def check(self, where: Mapping[str, str]) -> None:
        if self.assume_role_external_id and not self.assume_role_arn:
            raise ConfigError(f"{where['assume_role_arn']}: required")
        for name in ("path_prefix", "base_model_path_prefix"):
            if getattr(self, name):
                _id_rule(ids.check_object_path, getattr(self, name), where[name])


@dataclass(frozen=True, kw_only=True)
class SourceS3Config(S3Config):
    is_public: bool = setting("isPublic", Bool(), False, "read the source bucket without credentials")


@dataclass(frozen=True, kw_only=True)
class ObjectStoreConfig(Settings):
    s3: S3Config | None = setting("s3", Section(S3Config, optional=True), None, "store in S3 (keys below)")
    local_path: str = setting(
        "local.path", Str(), "./data/objects", "directory used as the store when there is no `s3` section"
    )

    @property
    def path_prefix(self) -> str:
        return (self.s3.path_prefix if self.s3 else "") or "models"

    @property
    def base_model_path_prefix(self) -> str:
        return (self.s3.base_model_path_prefix if self.s3 else "") or "base-models"


@dataclass(frozen=True, kw_only=True)
class FineTunedModelSpec(Settings):
    model: str = setting("model", Str(), doc="Hugging Face repo of the fine-tuned model", required=True)
    base_model: str = setting("baseModel", Str(), doc="id of its base model", required=True)
    adapter_type: str = setting("adapterType", Str(("lora", "qlora"), fold_case=True), "", "lora or qlora")
    quantization_type: str = setting("quantizationType", Str(("gguf", "awq"), fold_case=True), "", "gguf or awq")

    def check(self, where: Mapping[str, str]) -> None:
        _id_rule(ids.parse_hugging_face, self.model, where["model"])
        _id_rule(ids.check_id, self.base_model, where["base_model"])


@dataclass(frozen=True, kw_only=True)
class DownloaderConfig(Settings):
    kind: str = setting("kind", Str(DOWNLOADER_KINDS), "huggingFace", "source of the static `baseModels`")
    hf_cache_dir: str = setting(
        "huggingFace.cacheDir", Str(), "", "huggingface_hub cache to go through; empty: stream straight to the store"
    )
    s3: SourceS3Config | None = setting(
        "s3",
        Section(SourceS3Config, optional=True),
        None,
        "source bucket for kind s3 and object-store models (S3 keys as above, plus isPublic)",
    )
    ollama_registry: str = setting("ollama.registry", Str(), "https://registry.ollama.ai", "Ollama registry base URL")

    IGNORED: ClassVar[Mapping[str, str]] = {
        "ollama.port": "upstream ran a local ollama server; we speak to the registry"
    }

    def check(self, where: Mapping[str, str]) -> None:
        if self.kind == "s3" and self.s3 is None:
            raise ConfigError(f"{where['s3']}: required when kind is s3")
        if self.kind == "s3" and self.s3 is not None and not self.s3.bucket:
            raise ConfigError(f"{where['s3']}.bucket: required")


@dataclass(frozen=True, kw_only=True)
class LoaderConfig(Settings):
    enable: bool = setting("enable", Bool(), True, "run the in-process loader in role `all`")
    model_load_interval: float = setting(
        "modelLoadInterval", Duration(positive=True), 10.0, "how often to look for requested models", top_level=True
    )
    concurrency: int = setting("concurrency", Int(1, 64), 2, "models loaded at once")
    run_once: bool = setting(
        "runOnce", Bool(), False, "load the static lists, then exit (role `loader`)", top_level=True
    )
    base_models: tuple[str, ...] = setting(
        "baseModels",
        StrList(),
        (),
        "ids to load at start: `org/name[/file][@revision]` (huggingFace), `name:tag` (ollama), "
        "a name under the source bucket (s3)",
        top_level=True,
        example="[google/gemma-2b, org/repo/file.gguf@main]",
    )
    models: tuple[FineTunedModelSpec, ...] = setting(
        "models", ListOf(FineTunedModelSpec), (), "fine-tuned models to load at start (keys below)", top_level=True
    )
    downloader: DownloaderConfig = setting(
        "downloader", Section(DownloaderConfig), DownloaderConfig(), "where static models come from", top_level=True
    )
    worker_service_addr: str = setting(
        "workerServiceAddr",
        Str(),
        "",
        "`host:port` of the worker gRPC API, for role `loader`",
        aliases=("modelManagerServerWorkerServiceAddr",),
        top_level=True,
        example="model-manager-server:8082",
    )
    worker_service_tls: bool = setting("workerServiceTls", Bool(), False, "TLS to the worker API")
    progress_interval: float = setting(
        "progressInterval", Duration(positive=True), 5.0, "how often a loader reports progress and renews its lease"
    )

    IGNORED: ClassVar[Mapping[str, str]] = {"worker": "upstream's in-cluster worker settings"}

    def check(self, where: Mapping[str, str]) -> None:
        rules: dict[str, ids.Rule] = {"huggingFace": ids.parse_hugging_face, "ollama": ids.check_ollama}
        rule = rules.get(self.downloader.kind, ids.check_id)
        for i, entry in enumerate(self.base_models):
            _id_rule(rule, entry, f"{where['base_models']}[{i}]")
        addr = self.worker_service_addr
        if addr and not addr.rpartition(":")[2].isdigit():
            raise ConfigError(f"{where['worker_service_addr']}: must be host:port, got {addr!r}")


@dataclass(frozen=True, kw_only=True)
class CacheConfig(Settings):
    enable: bool = setting(
        "enable",
        Bool(),
        True,
        "reuse encoded GetModel and ListModels answers until the next write to the catalogue (any replica's)",
    )
    max_mib: int = setting("maxMiB", Int(1, 16 * 1024), 64, "memory for cached answers per server, MiB")


@dataclass(frozen=True, kw_only=True)
class AuthConfig(Settings):
    enable: bool = setting(
        "enable",
        Bool(),
        False,
        "require an API key (`Authorization: Bearer`) on every call but health checks; keys are made with "
        "`model-manager keys create`",
    )
    key_cache_ttl: float = setting(
        "keyCacheTtl",
        Duration(positive=True),
        5.0,
        "how long a server trusts a key it looked up; a revoked key stops working on every replica within this",
    )

    IGNORED: ClassVar[Mapping[str, str]] = {
        "rbacInternalServerAddr": "llmariner's RBAC server; API keys live in this service's own database"
    }


@dataclass(frozen=True, kw_only=True)
class OciCredential(Settings):
    registry: str = setting(
        "registry", Str(), doc="the registry's host[:port]", required=True, example="harbor.internal"
    )
    username: str = setting("username", Str(), doc="user name (for a robot account, its full name)", required=True)
    password_env_name: str = setting(
        "passwordEnvName", Str(), doc="environment variable holding the password or token", required=True
    )

    def check(self, where: Mapping[str, str]) -> None:
        _id_rule(_check_registry, self.registry, where["registry"])


@dataclass(frozen=True, kw_only=True)
class OciConfig(Settings):
    insecure_registries: tuple[str, ...] = setting(
        "insecureRegistries",
        StrList(),
        (),
        "registries (host[:port]) spoken to over plain HTTP; every other one over TLS, its certificate verified",
        example="[registry.local:5000]",
    )
    allowed_registries: tuple[str, ...] = setting(
        "allowedRegistries",
        StrList(),
        (),
        "the only registries (host[:port]) pushes and oci:// loads may reach; empty: any. Requesters choose the host, "
        "so list them wherever the servers can reach what requesters should not",
        example="[harbor.internal, registry.local:5000]",
    )
    credentials: tuple[OciCredential, ...] = setting(
        "credentials", ListOf(OciCredential), (), "registry logins (keys below); they outrank the Docker config"
    )
    docker_config: str = setting(
        "dockerConfig",
        Str(),
        "",
        "a Docker config.json to read logins from (`auths`, as `docker login` writes); empty: "
        "$DOCKER_CONFIG/config.json or ~/.docker/config.json when there is one",
    )
    chunk_size: int = setting(
        "chunkSize",
        Int(MIB, 4096 * MIB),
        64 * MIB,
        "a blob larger than this is pushed in chunks of this size (bytes), each one resumable; smaller ones in one PUT",
    )
    pushes_at_once: int = setting("pushesAtOnce", Int(1, 64), 2, "pushes one server runs at the same time")

    def check(self, where: Mapping[str, str]) -> None:
        for host in self.insecure_registries:
            _id_rule(_check_registry, host, where["insecure_registries"])
        for host in self.allowed_registries:
            _id_rule(_check_registry, host, where["allowed_registries"])


def _check_registry(value: str, path: str) -> str:
    try:
        oci_ref.parse_oci(f"{value}/x", path)
    except ids.InvalidId as e:
        raise ids.InvalidId(f"{path}: {value[:80]!r} is not a registry host[:port]") from e
    return value


@dataclass(frozen=True, kw_only=True)
class LoggingConfig(Settings):
    format: str = setting(
        "format", Str(choices=logs.FORMATS, fold_case=True), "text", "text lines for people, json lines for collectors"
    )
    level: str = setting("level", Str(choices=logs.LEVELS, fold_case=True), "info", "the least severe level written")
    requests: bool = setting("requests", Bool(), True, "one line per request (method, route, status, duration, id)")


@dataclass(frozen=True, kw_only=True)
class Config(Settings):
    http_port: int = setting("httpPort", PORT, 8080, "REST: the Models API, /healthz, /readyz")
    grpc_port: int = setting("grpcPort", PORT, 8081, "public gRPC: ModelsService, health, reflection")
    worker_grpc_port: int = setting(
        "workerServiceGrpcPort", PORT, 8082, "worker gRPC: ModelsWorkerService", aliases=("internalGrpcPort",)
    )
    bind_address: str = setting(
        "bindAddress",
        Str(),
        "",
        "address all three ports listen on; empty: every address (the quick-start config uses 127.0.0.1)",
        example="127.0.0.1",
    )
    http_host: str = setting("httpHost", Str(), "", "address of the REST port, overriding bindAddress")
    grpc_host: str = setting("grpcHost", Str(), "", "address of the public gRPC port, overriding bindAddress")
    worker_grpc_host: str = setting(
        "workerServiceGrpcHost", Str(), "", "address of the worker gRPC port, overriding bindAddress"
    )
    http: HttpConfig = setting("http", Section(HttpConfig), HttpConfig(), "REST connection timeouts")
    limits: LimitsConfig = setting(
        "limits", Section(LimitsConfig), LimitsConfig(), "sizes requests and models may have"
    )
    graceful_shutdown_delay: float = setting(
        "gracefulShutdownDelay", Duration(), 0.0, "after SIGTERM, keep serving this long before draining"
    )
    database: DatabaseConfig | None = setting(
        "database", Section(DatabaseConfig, optional=True), None, "PostgreSQL; without it, the embedded SQLite file"
    )
    standalone: bool = setting(
        "debug.standalone", Bool(), False, "role `loader` keeps its own catalogue in SQLite (no server needed)"
    )
    sqlite_path: str = setting("debug.sqlitePath", Str(), "./data/model_manager.db", "the embedded SQLite database")
    loading: LoadingConfig = setting("loading", Section(LoadingConfig), LoadingConfig(), "loader leases")
    object_store: ObjectStoreConfig = setting(
        "objectStore", Section(ObjectStoreConfig), ObjectStoreConfig(), "where model files are stored"
    )
    cache: CacheConfig = setting("cache", Section(CacheConfig), CacheConfig(), "answers reused between writes")
    auth: AuthConfig = setting("auth", Section(AuthConfig), AuthConfig(), "API keys and roles (keys below)")
    logging: LoggingConfig = setting("logging", Section(LoggingConfig), LoggingConfig(), "log lines and their form")
    loader: LoaderConfig = setting("loader", Section(LoaderConfig, sees_top_level=True), LoaderConfig(), "the loader")
    oci: OciConfig = setting("oci", Section(OciConfig), OciConfig(), "OCI registries: pushes and oci:// loads")

    IGNORED: ClassVar[Mapping[str, str]] = {
        "usageSender": "usage reporting to llmariner's control plane",
        "componentStatusSender": "status reporting to llmariner's control plane",
        "projectCache": "upstream's project cache",
        "worker": "upstream's in-cluster worker settings",
    }

    def listen_hosts(self) -> tuple[str, str, str]:
        """The addresses of the REST, public gRPC and worker gRPC ports ("" for every address)."""
        base = self.bind_address
        return (self.http_host or base, self.grpc_host or base, self.worker_grpc_host or base)


def _is_bad_path(value: str) -> bool:
    try:
        ids.check_object_path(value, "")
    except ids.InvalidId:
        return True
    return False


def _id_rule(rule: ids.Rule, value: str, path: str) -> None:
    try:
        rule(value, path)
    except ids.InvalidId as e:
        raise ConfigError(e.message) from e
