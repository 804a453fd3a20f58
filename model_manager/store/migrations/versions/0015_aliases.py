"""Aliases: stable names for models (one namespace per tenant), their history, and on each model row whether an
alias names it (so that reads look aliases up only for those).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_aliases_tenant_name"),
    )
    op.create_index("ix_aliases_model", "aliases", ["tenant_id", "model_id"])
    op.create_table(
        "alias_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("from_model_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("to_model_id", sa.String(256), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.String(32), nullable=False, server_default=""),
    )
    op.create_index("ix_alias_changes_alias", "alias_changes", ["tenant_id", "name", "id"])
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("aliased", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("aliased")
    op.drop_index("ix_alias_changes_alias", "alias_changes")
    op.drop_table("alias_changes")
    op.drop_index("ix_aliases_model", "aliases")
    op.drop_table("aliases")
