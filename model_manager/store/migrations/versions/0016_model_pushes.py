"""Pushes of models to OCI registries: one row per push, its progress and its outcome.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_pushes",
        sa.Column("push_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("destination", sa.String(600), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes_skipped", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("files_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("files_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("manifest_digest", sa.String(80), nullable=False, server_default=""),
        sa.Column("failure_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_model_pushes_target", "model_pushes", ["tenant_id", "destination", "status"])


def downgrade() -> None:
    op.drop_index("ix_model_pushes_target", "model_pushes")
    op.drop_table("model_pushes")
