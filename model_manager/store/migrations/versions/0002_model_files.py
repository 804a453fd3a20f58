"""Record the files of loaded models (path, size, sha256) as JSON on the model rows.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("files", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("files")
