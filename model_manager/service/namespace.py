"""One storage area per tenant, assigned by the server from the caller's tenant, never from what a worker sends.

The default tenant keeps llmariner's single-tenant layout, so an upstream loader of that tenant keeps working
unchanged: its storage prefix (the server's objectStore path prefix, `models`, unless its worker recorded another)
holds base models under `<prefix>/<baseModelPathPrefix>/` and fine-tuned ones under `<prefix>/<tenant>/`, anywhere
outside `tenants/`. Every other tenant T has `tenants/T/` and nothing else: the prefix its worker asks for is placed
inside it (`models` becomes `tenants/T/models`). Two areas are never at, inside or above one another, so no order of
events can give one tenant a path that another has used or will use. Rows written before areas existed may lie
anywhere; `tenancy.check_path` compares every new path with them as well.
"""

from __future__ import annotations

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument
from model_manager.core.identity import DEFAULT_TENANT_ID
from model_manager.service import validate

TENANTS_ROOT = ids.TENANTS_ROOT


def owner(path: str) -> str | None:
    """The tenant whose area holds `path`; None for `tenants` itself and the paths above it, which would hold
    every tenant's files."""
    if ids.is_within(TENANTS_ROOT, path):
        return None
    if ids.is_within(path, TENANTS_ROOT):
        return path.split("/")[1]
    return DEFAULT_TENANT_ID


def assign_prefix(tenant_id: str, requested: str) -> str:
    """The storage prefix a tenant gets when it asks for `requested` (a checked relative path)."""
    if tenant_id == DEFAULT_TENANT_ID:
        if owner(requested) != DEFAULT_TENANT_ID:
            raise InvalidArgument(
                f"path_prefix {requested!r} is not allowed: {TENANTS_ROOT + '/'!r} holds the other tenants' storage"
            )
        return requested
    root = f"{TENANTS_ROOT}/{tenant_id}"
    prefix = requested if ids.is_within(requested, root) else f"{root}/{requested}"
    return validate.check_object_path(prefix, "path_prefix")
