"""Keep what a model is, as its loader read it from the files' headers: a JSON object of ModelMetadata's fields, and
the two that listings filter on (architecture, quantization) in columns of their own.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("metadata", sa.Text(), nullable=False, server_default=""))
            batch.add_column(sa.Column("metadata_architecture", sa.String(256), nullable=False, server_default=""))
            batch.add_column(sa.Column("metadata_quantization", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("metadata_quantization")
            batch.drop_column("metadata_architecture")
            batch.drop_column("metadata")
