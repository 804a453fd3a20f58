"""Reliability: which load registered a base model (so deleting a model while it loads discards what the load
registered), when a model given back after a source outage may be claimed again, and file removals still to do.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild): on SQLite a rebuilt table would lose the counting triggers of 0003.
    op.add_column("base_models", sa.Column("loaded_by", sa.Integer(), nullable=True))
    for table in ("base_models", "models"):
        op.add_column(table, sa.Column("claimable_at", sa.Float(), nullable=True))
    op.create_table(
        "pending_deletions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("keep", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending_deletions")
    for table in ("base_models", "models"):
        op.drop_column(table, "claimable_at")
    op.drop_column("base_models", "loaded_by")
