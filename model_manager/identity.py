"""Who is calling. The fronts build an Identity and pass it explicitly into the service."""

from dataclasses import dataclass

DEFAULT_TENANT_ID = "default-tenant-id"
DEFAULT_ORGANIZATION_ID = "default"
DEFAULT_PROJECT_ID = "default"


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    organization_id: str
    project_id: str


# Auth is disabled: every public call runs as the default tenant, organization and project.
DEFAULT_IDENTITY = Identity(DEFAULT_TENANT_ID, DEFAULT_ORGANIZATION_ID, DEFAULT_PROJECT_ID)

# Worker calls carry only the tenant; the project comes from each request where it matters.
DEFAULT_WORKER_IDENTITY = Identity(DEFAULT_TENANT_ID, "", "")


def identity_from_headers(headers: object) -> Identity:
    """The caller of a REST request or gRPC call. Auth is disabled: everyone is the default identity."""
    return DEFAULT_IDENTITY
