"""Storage configs and Hugging Face repo records."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from model_manager.core.errors import AlreadyExists
from model_manager.store.catalog import now_seconds
from model_manager.store.database import Conn
from model_manager.store.tables import hf_model_repos, storage_configs


async def get_storage_prefix(conn: Conn, tenant_id: str) -> str | None:
    t = storage_configs
    return (await conn.execute(select(t.c.path_prefix).where(t.c.tenant_id == tenant_id))).scalar()


async def create_storage_config(conn: Conn, tenant_id: str, path_prefix: str) -> None:
    try:
        await conn.execute(
            insert(storage_configs).values(tenant_id=tenant_id, path_prefix=path_prefix, created_at=now_seconds())
        )
    except IntegrityError as e:
        raise AlreadyExists("storage config already exists") from e


async def create_hf_repo(conn: Conn, tenant_id: str, project_id: str, name: str) -> None:
    try:
        await conn.execute(
            insert(hf_model_repos).values(
                tenant_id=tenant_id, project_id=project_id, name=name, created_at=now_seconds()
            )
        )
    except IntegrityError as e:
        raise AlreadyExists(f'hugging face repo "{name}" already exists') from e


async def hf_repo_exists(conn: Conn, tenant_id: str, project_id: str, name: str) -> bool:
    """A record in the given project, or a global one, counts."""
    t = hf_model_repos
    q = (
        select(t.c.id)
        .where(t.c.tenant_id == tenant_id, t.c.name == name, t.c.project_id.in_(("", project_id)))
        .limit(1)
    )
    return (await conn.execute(q)).first() is not None
