"""Authentication: turn a caller's credentials (a bearer API key, optional OpenAI-Organization/Project headers)
into an Identity, or refuse with Unauthenticated (401) or PermissionDenied (403).

Keys live in the database, so every replica sees a new or revoked key. A replica trusts a lookup for
`auth.keyCacheTtl` seconds, so a revocation takes effect everywhere within that time without a query per request.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from model_manager.core.errors import PermissionDenied, ServiceError, Unauthenticated
from model_manager.core.identity import DEFAULT_IDENTITY, DEFAULT_WORKER_IDENTITY, Identity, Role
from model_manager.service import keys as key_format
from model_manager.store import keys
from model_manager.store.database import Database
from model_manager.store.keys import KeyRecord

log = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000  # valid keys remembered per process; more are simply looked up again
USE_NOTE_SECONDS = 60.0  # last_used_at is written at most this often per key and process

# One message per status, whatever the reason: a caller learns that a key failed, never why.
KEY_REQUIRED = "an API key is required: send the header 'Authorization: Bearer <key>'"
KEY_INVALID = "invalid API key"


class Api(StrEnum):
    PUBLIC = "public"
    WORKER = "worker"


@dataclass(frozen=True)
class Credentials:
    authorization: str | None  # the Authorization header or metadata value
    organization: str | None = None  # OpenAI-Organization
    project: str | None = None  # OpenAI-Project


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Authenticator:
    def __init__(
        self,
        db: Database,
        enabled: bool,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.enabled = enabled
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[KeyRecord, float]] = {}
        self._noted: dict[str, float] = {}

    async def authenticate(self, creds: Credentials, api: Api) -> Identity:
        if not self.enabled:
            return DEFAULT_IDENTITY if api is Api.PUBLIC else DEFAULT_WORKER_IDENTITY
        token = bearer_token(creds.authorization)
        if token is None:
            raise Unauthenticated(KEY_REQUIRED)
        parsed = key_format.parse(token)
        record = await self._lookup(parsed.key_id) if parsed else None
        if (
            parsed is None
            or record is None
            or record.revoked_at is not None
            or not hmac.compare_digest(record.secret_sha256, key_format.secret_hash(parsed.secret))
        ):
            raise Unauthenticated(KEY_INVALID)
        role = Role(record.role)
        if api is Api.PUBLIC and not role.is_public:
            raise PermissionDenied("a worker key cannot call the public API; use a reader, writer or admin key")
        if api is Api.WORKER and role.is_public:
            raise PermissionDenied(f"the worker API needs a worker key; this is a {role} key")
        for header, value, own in (
            ("OpenAI-Organization", creds.organization, record.organization_id),
            ("OpenAI-Project", creds.project, record.project_id),
        ):
            # The key decides the scope; a header may repeat it but never change it.
            if role.is_public and value and value != own:
                raise PermissionDenied(f"this key belongs to {header} {own!r}; it cannot act in {value!r}")
        await self._note_use(record.key_id)
        return Identity(record.tenant_id, record.organization_id, record.project_id, role, record.key_id)

    async def _lookup(self, key_id: str) -> KeyRecord | None:
        now = self.clock()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[1] < self.cache_seconds:
            return cached[0]
        async with self.db.reading() as conn:
            record = await keys.find_key(conn, key_id)
        self._cache.pop(key_id, None)
        if record is not None and record.revoked_at is None:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))  # the oldest lookup
            self._cache[key_id] = (record, now)
        return record

    async def _note_use(self, key_id: str) -> None:
        """Record when the key was last used, at most once a minute: a write per request would cost more than
        the request. A failure here never fails the call it rode on."""
        now = self.clock()
        if now - self._noted.get(key_id, -USE_NOTE_SECONDS) < USE_NOTE_SECONDS:
            return
        self._noted[key_id] = now
        if len(self._noted) > CACHE_ENTRIES:
            self._noted.clear()
        try:
            async with self.db.transaction() as conn:
                await keys.note_use(conn, key_id, int(time.time()))
        except ServiceError as e:
            log.warning("could not record the use of API key %s: %s", key_id, e.message)
