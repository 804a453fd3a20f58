"""API keys: their format, creation (the one moment a key exists in clear), listing and revocation.

A key reads `mmk_<key id>_<secret>`. The key id (12 hex digits) is public: it names the key in `keys list` and
`keys revoke` and finds its row. The secret is 256 random bits, of which only a SHA-256 is stored; a fast hash
is enough for a secret that long (nothing to brute-force), and keeps checking a key cheap on every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument, NotFound
from model_manager.core.identity import Role
from model_manager.store import keys
from model_manager.store.database import Database
from model_manager.store.keys import KeyRecord

PREFIX = "mmk"
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
MAX_TENANT_LEN = 64
# Scope names end up in storage paths (`<prefix>/<tenant>/<project>/<model>`): no "/" that could make one tenant's
# directory sit inside another's.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(value: str, field: str) -> None:
    ids.check_id(value, field)
    if not _NAME.match(value):
        raise ids.InvalidId(
            f"{field} {value!r} must be letters, digits, '.', '_' and '-', starting with a letter or digit"
        )


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


def parse(key: str) -> ParsedKey | None:
    m = _KEY.match(key)
    return ParsedKey(m.group(1), m.group(2)) if m else None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyScope:
    tenant_id: str
    role: Role
    organization_id: str = ""
    project_id: str = ""
    cluster: str = ""
    name: str = ""

    def check(self) -> None:
        _check_name(self.tenant_id, "tenant")
        if len(self.tenant_id) > MAX_TENANT_LEN:
            raise ids.InvalidId(f"tenant must be at most {MAX_TENANT_LEN} characters")
        if self.role is Role.WORKER:
            if self.organization_id or self.project_id:
                raise ids.InvalidId("a worker key serves a whole tenant: it takes no organization or project")
            if self.cluster:
                _check_name(self.cluster, "cluster")
        else:
            _check_name(self.organization_id, "organization")
            _check_name(self.project_id, "project")
            if self.cluster:
                raise ids.InvalidId("cluster is only for worker keys")
        if self.name:
            ids.check_id(self.name, "name")


class KeyService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, scope: KeyScope) -> tuple[str, KeyRecord]:
        """A new key: returns it in clear (to be shown once) and its stored record."""
        try:
            scope.check()
        except ids.InvalidId as e:
            raise InvalidArgument(e.message) from e
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        values = {
            "key_id": key_id,
            "secret_sha256": secret_hash(secret),
            "tenant_id": scope.tenant_id,
            "organization_id": scope.organization_id,
            "project_id": scope.project_id,
            "role": scope.role.value,
            "cluster": scope.cluster,
            "name": scope.name,
        }
        async with self.db.transaction() as conn:
            record = await keys.insert_key(conn, values)
        return f"{PREFIX}_{key_id}_{secret}", record

    async def list(self, tenant_id: str | None = None) -> list[KeyRecord]:
        async with self.db.reading() as conn:
            return await keys.list_keys(conn, tenant_id)

    async def revoke(self, key_id: str) -> KeyRecord:
        async with self.db.transaction() as conn:
            record = await keys.revoke_key(conn, key_id)
        if record is None:
            raise NotFound(f'API key "{key_id}" not found')
        return record
