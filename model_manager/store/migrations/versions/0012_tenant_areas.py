"""Every tenant but the default one stores in an area of its own, `tenants/<tenant id>/`: a storage prefix such a
tenant's worker recorded before areas existed (e.g. `models`, the prefix every tenant shared) moves inside its area
(`tenants/<tenant id>/models`), so its next models are stored there. Models already stored keep their paths; the
server compares every new path with them.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DEFAULT_TENANT_ID = "default-tenant-id"  # as identity.py names it; a migration keeps its own copy of such facts


def upgrade() -> None:
    # substr rather than LIKE: a tenant id may hold "_", which LIKE would read as any character.
    area = "'tenants/' || tenant_id"
    op.execute(
        sa.text(
            f"UPDATE storage_configs SET path_prefix = {area} || '/' || path_prefix"
            f" WHERE tenant_id != :default AND path_prefix != {area}"
            f" AND substr(path_prefix, 1, length({area}) + 1) != {area} || '/'"
        ).bindparams(default=DEFAULT_TENANT_ID)
    )


def downgrade() -> None:
    # Nothing to undo: earlier versions take any prefix a tenant recorded, these included, and store there.
    pass
