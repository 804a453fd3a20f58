"""Registry logins and the two ways registries ask for them.

A registry answers 401 with `WWW-Authenticate`: `Basic realm=...` (the login on every request), or
`Bearer realm=...,service=...,scope=...` (a token from that realm, asked for with the login when there is one, for
the scope of the request). Logins come from `oci.credentials` (passwords in environment variables) and from a
Docker `config.json` (`auths`, as `docker login` writes it); the config's own entries win.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model_manager.config import ConfigError, OciConfig

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def _docker_config_path(configured: str) -> Path | None:
    if configured:
        return Path(configured)
    base = os.environ.get("DOCKER_CONFIG")
    path = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None


def _host_of(key: str) -> str:
    """A Docker config `auths` key ("https://harbor.local/v2/", "harbor.local:5000") as host[:port]."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def _from_docker_config(path: Path) -> dict[str, Login]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"oci.dockerConfig: cannot read {path}: {e}") from e
    logins: dict[str, Login] = {}
    auths = doc.get("auths") if isinstance(doc, dict) else None
    for key, entry in (auths or {}).items():
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise ConfigError(f"oci.dockerConfig: {path}: the auth of {key!r} is not base64 user:password") from e
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
        if user:
            logins[_host_of(key)] = Login(user, password)
    return logins


class Logins:
    """The login for each registry, read once at start."""

    def __init__(self, config: OciConfig, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = _docker_config_path(config.docker_config)
        self._by_host = _from_docker_config(path) if path is not None else {}
        for i, cred in enumerate(config.credentials):
            if cred.password_env_name not in env:
                raise ConfigError(
                    f"oci.credentials[{i}].passwordEnvName: the environment variable {cred.password_env_name} is "
                    "not set"
                )
            self._by_host[cred.registry] = Login(cred.username, env[cred.password_env_name])

    def get(self, registry: str) -> Login | None:
        return self._by_host.get(registry)
