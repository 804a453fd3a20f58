"""What a tenant's worker may name: storage paths inside the tenant's prefix (which lies in the tenant's own area,
see namespace.py) that share no files with another tenant's models, relative file names, and projects of its own
tenant.

Workers are trusted with their whole tenant (every project), never with another one: these checks are what keep
a worker key from pointing a model at someone else's files (or at another bucket) or filing into a project that
is not its tenant's.
"""

from __future__ import annotations

from collections.abc import Iterable

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument, PermissionDenied
from model_manager.core.identity import Identity
from model_manager.proto.llmariner.models.server.v1 import ModelFile
from model_manager.service import access, namespace, validate
from model_manager.service.context import ServiceContext
from model_manager.store import catalog, keys
from model_manager.store.database import Conn


async def check_path(ctx: ServiceContext, conn: Conn, who: Identity, path: str, field: str) -> None:
    """`path` (a model's directory or GGUF file, a load's directory) lies under the tenant's storage prefix, in
    the tenant's own area, and shares no files with a model of another tenant: not even one of the same id, since
    files are shared within a tenant only (another tenant's copy may be private or gated)."""
    validate.check_object_path(path, field)
    prefix = await ctx.path_prefix(conn, who.tenant_id)
    if path == prefix or not ids.is_within(path, prefix):
        raise InvalidArgument(f"{field} {path!r} must lie under this tenant's storage prefix {prefix + '/'!r}")
    if namespace.owner(path) != who.tenant_id:  # only a prefix recorded before areas existed can lead here
        raise InvalidArgument(f"{field} {path!r} lies in the storage area of another tenant")
    if any(o.tenant_id != who.tenant_id for o in await catalog.models_overlapping(conn, path)):
        raise InvalidArgument(f"{field} {path!r} holds, or lies inside, the files of a model of another tenant")


async def check_bucket_read(
    ctx: ServiceContext, conn: Conn, who: Identity, bucket: str, key: str, field: str, configured: bool = False
) -> None:
    """A load may copy `bucket`/`key` into the caller's models. The loaders read it with their own credentials, so
    a caller could otherwise have them copy what it may not read itself (a confused deputy): in the store's own
    bucket only what lies in the caller's tenant area and holds no model the caller cannot see (another tenant's
    from before areas, another project's); another bucket only when the operator listed it
    (loading.allowedSourceBuckets) or configured it as the loaders' source (`configured`)."""
    where = f"{field} s3://{bucket}/{key}"
    if bucket == ctx.platform_bucket:
        if namespace.owner(key) != who.tenant_id:
            raise PermissionDenied(f"{where} lies in the model store's own bucket, outside this tenant's storage area")
        for o in await catalog.models_overlapping(conn, key):
            if not access.can_see(who, o.tenant_id, o.project_id, o.kind):
                raise PermissionDenied(f"{where} holds, or lies inside, the files of a model this caller cannot read")
        return
    if configured or any(_listed(entry, bucket, key) for entry in ctx.loading.allowed_source_buckets):
        return
    raise PermissionDenied(
        f"{where}: bucket {bucket!r} is not one models may be loaded from (the operator lists those in "
        "loading.allowedSourceBuckets)"
    )


def _listed(entry: str, bucket: str, key: str) -> bool:
    name, _, prefix = entry.partition("/")
    return name == bucket and (not prefix or ids.is_within(key, prefix.rstrip("/")))


def check_files(files: Iterable[ModelFile]) -> None:
    """File names are relative to the model's path and may not climb out of it."""
    for i, f in enumerate(files):
        validate.check_object_path(f.path, f"files[{i}].path")


async def check_project(
    ctx: ServiceContext, conn: Conn, who: Identity, project_id: str, organization_id: str = ""
) -> None:
    """With auth on, a project must be one the tenant's API keys name (keys are the project registry); "" (the
    whole tenant) always passes. With auth off there is one tenant and any project id is taken as given."""
    if not ctx.auth_enabled or not project_id:
        return
    projects = await keys.tenant_projects(conn, who.tenant_id)
    if project_id not in projects:
        raise InvalidArgument(f'project_id "{project_id}" is not a project of this tenant')
    if organization_id and projects[project_id] != organization_id:
        raise InvalidArgument(f'organization_id "{organization_id}" is not the organization of project "{project_id}"')
