"""What each role may do on the public API. The worker API is gated by the key kind alone (see auth.py)."""

from __future__ import annotations

from model_manager.core.errors import PermissionDenied
from model_manager.core.identity import Identity, Role
from model_manager.store.records import Kind, ModelRecord


def require(who: Identity, role: Role, action: str) -> None:
    if who.role.rank < role.rank:
        raise PermissionDenied(f"{action} needs the {role} role; this key has the {who.role} role")


def is_global(rec: ModelRecord) -> bool:
    """A base model of the whole tenant rather than of one project."""
    return rec.kind is Kind.BASE and rec.project_id == ""


def can_see(who: Identity, tenant_id: str, project_id: str, kind: Kind) -> bool:
    """Whether a model of `tenant_id` and `project_id` is one the caller may read: its tenant's global base models
    and its own project's models (a worker sees its whole tenant)."""
    if tenant_id != who.tenant_id:
        return False
    if who.role is Role.WORKER:
        return True
    return project_id == who.project_id or (kind is Kind.BASE and project_id == "")


def require_owner(who: Identity, rec: ModelRecord, action: str) -> None:
    """Changing a model: writers change their project's models (checked first, by `require`); the tenant's global
    base models need admin."""
    if is_global(rec):
        require(who, Role.ADMIN, f"{action} a global base model")
