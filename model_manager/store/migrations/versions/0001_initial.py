"""Initial schema: base models, fine-tuned models, HF repo records, storage configs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _loading_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("source_repository", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("loading_status", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("loading_failure_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("loading_status_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("lease_holder", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("activation_status", sa.Integer(), nullable=False, server_default="2"),
        sa.Column("config", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("path", sa.Text(), nullable=False, server_default=""),
        sa.Column("formats", sa.String(64), nullable=False, server_default=""),
        sa.Column("gguf_model_path", sa.Text(), nullable=False, server_default=""),
        sa.Column("requested_revision", sa.String(256), nullable=False, server_default=""),
        sa.Column("revision", sa.String(256), nullable=False, server_default=""),
        *_loading_columns(),
        sa.UniqueConstraint("tenant_id", "model_id", "project_id", name="uq_base_models_tenant_model_project"),
    )
    op.create_index("ix_base_models_listing", "base_models", ["tenant_id", "activation_status", "model_id"])
    op.create_index("ix_base_models_claim", "base_models", ["tenant_id", "loading_status", "created_at"])

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("organization_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("project_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("base_model_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("suffix", sa.String(64), nullable=False, server_default=""),
        sa.Column("path", sa.Text(), nullable=False, server_default=""),
        sa.Column("model_file_location", sa.Text(), nullable=False, server_default=""),
        sa.Column("is_published", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("adapter", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("quantization", sa.Integer(), nullable=False, server_default="0"),
        *_loading_columns(),
        sa.UniqueConstraint("tenant_id", "model_id", name="uq_models_tenant_model"),
    )
    op.create_index("ix_models_listing", "models", ["tenant_id", "project_id", "activation_status", "model_id"])
    op.create_index("ix_models_claim", "models", ["tenant_id", "loading_status", "created_at"])

    op.create_table(
        "hf_model_repos",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "project_id", name="uq_hf_model_repos_tenant_name_project"),
    )

    op.create_table(
        "storage_configs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("path_prefix", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", name="uq_storage_configs_tenant"),
    )


def downgrade() -> None:
    op.drop_table("storage_configs")
    op.drop_table("hf_model_repos")
    op.drop_table("models")
    op.drop_table("base_models")
