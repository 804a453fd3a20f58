"""Typed, frozen settings loaded once from the YAML file (shared/spec/config.md).

Every error names the key path (`objectStore.s3.bucket: required`). Upstream llmariner files are accepted:
the loader file keeps its keys at the top level and the server file may say `internalGrpcPort`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration problem; the message starts with the key path."""


# Keys that upstream files carry but that mean nothing here: accepted with a warning.
_IGNORED = {
    "usageSender",
    "componentStatusSender",
    "projectCache",
    "worker",
    "auth.rbacInternalServerAddr",
    "database.ssl.rootCert",
    "database.originalDatabase",
    "loader.downloader.ollama.port",
    "loader.worker",
}

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class DatabaseConfig:
    host: str
    port: int = 5432
    username: str = "postgres"
    database: str = "model_manager"
    password_env_name: str = ""
    ssl_mode: str = ""
    create_database: bool = False
    auto_migrate: bool = False


@dataclass(frozen=True)
class LoadingConfig:
    lease_seconds: float = 120.0
    max_attempts: int = 3


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str = ""
    region: str = ""
    bucket: str = ""
    path_prefix: str = ""
    base_model_path_prefix: str = ""
    insecure_skip_verify: bool = False
    assume_role_arn: str = ""
    assume_role_external_id: str = ""
    part_size: int = 64 * 1024 * 1024
    parts_in_flight: int = 4
    anonymous: bool = False  # unsigned requests, for public source buckets


@dataclass(frozen=True)
class ObjectStoreConfig:
    s3: S3Config | None = None
    local_path: str = "./data/objects"
    path_prefix: str = "models"
    base_model_path_prefix: str = "base-models"


@dataclass(frozen=True)
class FineTunedModelSpec:
    model: str
    base_model: str
    adapter_type: str = ""
    quantization_type: str = ""


@dataclass(frozen=True)
class DownloaderConfig:
    kind: str = "huggingFace"
    hf_cache_dir: str = ""
    s3: S3Config | None = None
    s3_is_public: bool = False
    ollama_registry: str = "https://registry.ollama.ai"


@dataclass(frozen=True)
class LoaderConfig:
    enable: bool = True
    model_load_interval: float = 10.0
    concurrency: int = 2
    run_once: bool = False
    base_models: tuple[str, ...] = ()
    models: tuple[FineTunedModelSpec, ...] = ()
    downloader: DownloaderConfig = field(default_factory=DownloaderConfig)
    worker_service_addr: str = ""
    worker_service_tls: bool = False
    progress_interval: float = 5.0


@dataclass(frozen=True)
class Config:
    http_port: int = 8080
    grpc_port: int = 8081
    worker_grpc_port: int = 8082
    graceful_shutdown_delay: float = 0.0
    database: DatabaseConfig | None = None
    sqlite_path: str = "./data/model_manager.db"
    standalone: bool = False
    loading: LoadingConfig = field(default_factory=LoadingConfig)
    object_store: ObjectStoreConfig = field(default_factory=ObjectStoreConfig)
    auth_enable: bool = False
    loader: LoaderConfig = field(default_factory=LoaderConfig)


class _Section:
    """A mapping read at a key path; remembers which keys were used so leftovers are reported."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or '<root>'}: must be a mapping")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def section(self, key: str) -> _Section:
        return _Section(self.raw(key), self._key(key))

    def string(self, key: str, default: str = "", required: bool = False) -> str:
        value = self.raw(key)
        if value is None:
            if required:
                raise ConfigError(f"{self._key(key)}: required")
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self._key(key)}: must be a string")
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self._key(key)}: must be true or false")
        return value

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._key(key)}: must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{self._key(key)}: must be {bound}, got {value}")
        return value

    def port(self, key: str, default: int) -> int:
        return self.integer(key, default, minimum=0, maximum=65535)

    def duration(self, key: str, default: float) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        else:
            raise ConfigError(f"{self._key(key)}: must be a duration like '30s' or '5m', got {value!r}")
        if seconds < 0:
            raise ConfigError(f"{self._key(key)}: must not be negative")
        return seconds

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self._key(key)}: must be a list of non-empty strings")
        return tuple(value)

    def check_unknown(self) -> None:
        for key in self.data:
            if key in self.used:
                continue
            full = self._key(key)
            if full in _IGNORED or key in _IGNORED:
                log.warning("config key %s has no meaning in model-manager and is ignored", full)
                continue
            raise ConfigError(f"{full}: unknown key")


def _s3(sec: _Section, require_bucket: bool) -> S3Config:
    assume = sec.section("assumeRole")
    cfg = S3Config(
        endpoint_url=sec.string("endpointUrl"),
        region=sec.string("region"),
        bucket=sec.string("bucket", required=require_bucket),
        path_prefix=sec.string("pathPrefix"),
        base_model_path_prefix=sec.string("baseModelPathPrefix"),
        insecure_skip_verify=sec.boolean("insecureSkipVerify"),
        assume_role_arn=assume.string("roleArn", required=assume.has("externalId")),
        assume_role_external_id=assume.string("externalId"),
        # S3 refuses parts under 5 MiB (but the last).
        part_size=sec.integer("partSizeMiB", 64, minimum=5, maximum=5 * 1024) * 1024 * 1024,
        parts_in_flight=sec.integer("partsInFlight", 4, minimum=1, maximum=64),
    )
    assume.check_unknown()
    sec.check_unknown()
    return cfg


def _database(sec: _Section) -> DatabaseConfig:
    ssl = sec.section("ssl")
    cfg = DatabaseConfig(
        host=sec.string("host", required=True),
        port=sec.port("port", 5432),
        username=sec.string("username", "postgres"),
        database=sec.string("database", required=True),
        password_env_name=sec.string("passwordEnvName"),
        ssl_mode=ssl.string("mode"),
        create_database=sec.boolean("createDatabase"),
        auto_migrate=sec.boolean("autoMigrate"),
    )
    ssl.check_unknown()
    sec.check_unknown()
    return cfg


def _object_store(sec: _Section) -> ObjectStoreConfig:
    s3 = _s3(sec.section("s3"), require_bucket=False) if sec.has("s3") else None
    local = sec.section("local")
    local_path = local.string("path", "./data/objects")
    local.check_unknown()
    sec.check_unknown()
    return ObjectStoreConfig(
        s3=s3,
        local_path=local_path,
        path_prefix=(s3.path_prefix if s3 and s3.path_prefix else "models"),
        base_model_path_prefix=(s3.base_model_path_prefix if s3 and s3.base_model_path_prefix else "base-models"),
    )


def _models(sec: _Section, key: str) -> tuple[FineTunedModelSpec, ...]:
    raw = sec.raw(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{sec._key(key)}: must be a list")
    out = []
    for i, item in enumerate(raw):
        m = _Section(item, f"{sec._key(key)}[{i}]")
        spec = FineTunedModelSpec(
            model=m.string("model", required=True),
            base_model=m.string("baseModel", required=True),
            adapter_type=m.string("adapterType").lower(),
            quantization_type=m.string("quantizationType").lower(),
        )
        if spec.adapter_type not in ("", "lora", "qlora"):
            raise ConfigError(f"{m._key('adapterType')}: must be lora or qlora")
        if spec.quantization_type not in ("", "gguf", "awq"):
            raise ConfigError(f"{m._key('quantizationType')}: must be gguf or awq")
        m.check_unknown()
        out.append(spec)
    return tuple(out)


def _downloader(sec: _Section) -> DownloaderConfig:
    kind = sec.string("kind", "huggingFace")
    if kind not in ("huggingFace", "s3", "ollama"):
        raise ConfigError(f"{sec._key('kind')}: must be one of huggingFace, s3, ollama; got {kind!r}")
    hf = sec.section("huggingFace")
    cache_dir = hf.string("cacheDir")
    hf.check_unknown()
    s3: S3Config | None = None
    is_public = False
    if sec.has("s3"):
        s3sec = sec.section("s3")
        is_public = s3sec.boolean("isPublic")
        s3 = _s3(s3sec, require_bucket=kind == "s3")
    elif kind == "s3":
        raise ConfigError(f"{sec._key('s3')}: required when kind is s3")
    ollama = sec.section("ollama")
    registry = ollama.string("registry", "https://registry.ollama.ai").rstrip("/")
    ollama.check_unknown()
    sec.check_unknown()
    return DownloaderConfig(kind=kind, hf_cache_dir=cache_dir, s3=s3, s3_is_public=is_public, ollama_registry=registry)


def _loader(root: _Section) -> LoaderConfig:
    sec = root.section("loader")

    # Upstream loader files keep these at the top level; the loader section wins when both are given.
    def pick(key: str) -> _Section:
        return sec if sec.has(key) or not root.has(key) else root

    worker_addr = pick("workerServiceAddr").string("workerServiceAddr")
    if not worker_addr:
        worker_addr = pick("modelManagerServerWorkerServiceAddr").string("modelManagerServerWorkerServiceAddr")
    cfg = LoaderConfig(
        enable=sec.boolean("enable", True),
        model_load_interval=pick("modelLoadInterval").duration("modelLoadInterval", 10.0),
        concurrency=sec.integer("concurrency", 2, minimum=1, maximum=64),
        run_once=pick("runOnce").boolean("runOnce"),
        base_models=pick("baseModels").str_list("baseModels"),
        models=_models(pick("models"), "models"),
        downloader=_downloader(pick("downloader").section("downloader")),
        worker_service_addr=worker_addr,
        worker_service_tls=sec.boolean("workerServiceTls"),
        progress_interval=sec.duration("progressInterval", 5.0),
    )
    if cfg.model_load_interval <= 0:
        raise ConfigError("loader.modelLoadInterval: must be greater than 0")
    sec.check_unknown()
    return cfg


def parse_config(data: Any) -> Config:
    """Build a Config from an already-parsed YAML document."""
    root = _Section(data, "")
    if root.has("internalGrpcPort") and root.has("workerServiceGrpcPort"):
        raise ConfigError("internalGrpcPort: give either internalGrpcPort or workerServiceGrpcPort, not both")
    worker_port_key = "internalGrpcPort" if root.has("internalGrpcPort") else "workerServiceGrpcPort"
    debug = root.section("debug")
    loading = root.section("loading")
    auth = root.section("auth")
    cfg = Config(
        http_port=root.port("httpPort", 8080),
        grpc_port=root.port("grpcPort", 8081),
        worker_grpc_port=root.port(worker_port_key, 8082),
        graceful_shutdown_delay=root.duration("gracefulShutdownDelay", 0.0),
        database=_database(root.section("database")) if root.raw("database") is not None else None,
        standalone=debug.boolean("standalone"),
        sqlite_path=debug.string("sqlitePath", "./data/model_manager.db"),
        loading=LoadingConfig(
            lease_seconds=loading.duration("leaseDuration", 120.0),
            max_attempts=loading.integer("maxAttempts", 3, minimum=1),
        ),
        object_store=_object_store(root.section("objectStore")),
        auth_enable=auth.boolean("enable"),
        loader=_loader(root),
    )
    if cfg.loading.lease_seconds <= 0:
        raise ConfigError("loading.leaseDuration: must be greater than 0")
    for sec in (debug, loading, auth):
        sec.check_unknown()
    root.check_unknown()
    return cfg


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    return parse_config(data)
