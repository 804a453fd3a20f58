"""Who is calling: tenant, organization, project and role. The fronts build an Identity (from the caller's API key
when auth is on) and pass it explicitly into the service, which decides what the role may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_TENANT_ID = "default-tenant-id"
DEFAULT_ORGANIZATION_ID = "default"
DEFAULT_PROJECT_ID = "default"


class Role(StrEnum):
    READER = "reader"  # list and get
    WRITER = "writer"  # also create, update, delete, activate and deactivate the project's models
    ADMIN = "admin"  # also the tenant's global base models
    WORKER = "worker"  # the worker API only, for its tenant

    @property
    def rank(self) -> int:
        """Order of the public roles (each may do what the lower ones may); 0 for the worker role."""
        return _RANKS.get(self, 0)

    @property
    def is_public(self) -> bool:
        return self is not Role.WORKER


_RANKS = {Role.READER: 1, Role.WRITER: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    organization_id: str
    project_id: str
    role: Role
    key_id: str = ""  # the API key that authenticated the call; "" when auth is off


# Auth is off: every public call runs as the default tenant, organization and project, with every right.
DEFAULT_IDENTITY = Identity(DEFAULT_TENANT_ID, DEFAULT_ORGANIZATION_ID, DEFAULT_PROJECT_ID, Role.ADMIN)

# Worker calls carry only the tenant; the project comes from each request where it matters.
DEFAULT_WORKER_IDENTITY = Identity(DEFAULT_TENANT_ID, "", "", Role.WORKER)
