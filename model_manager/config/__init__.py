"""Configuration: one YAML file, read once into frozen, typed settings.

`settings.py` declares every key (path, type, default, check, meaning); `schema.py` reads a file against those
declarations; `reference.py` renders them as the table in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from model_manager.config.schema import ConfigError, read_section
from model_manager.config.settings import (
    AuthConfig,
    CacheConfig,
    Config,
    DatabaseConfig,
    DownloaderConfig,
    FineTunedModelSpec,
    HttpConfig,
    LimitsConfig,
    LoaderConfig,
    LoadingConfig,
    LoggingConfig,
    ObjectStoreConfig,
    OciConfig,
    OciCredential,
    S3Config,
    SourceS3Config,
)

__all__ = [
    "AuthConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DownloaderConfig",
    "FineTunedModelSpec",
    "HttpConfig",
    "LimitsConfig",
    "LoaderConfig",
    "LoadingConfig",
    "LoggingConfig",
    "ObjectStoreConfig",
    "OciConfig",
    "OciCredential",
    "S3Config",
    "SourceS3Config",
    "load_config",
    "parse_config",
]


def parse_config(data: Any) -> Config:
    """Build a Config from an already-parsed YAML document."""
    return read_section(Config, data, "")


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
