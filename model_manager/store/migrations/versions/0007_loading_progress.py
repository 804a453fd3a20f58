"""Record a load's progress numbers (bytes and files, done and total) on the model rows.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("progress_bytes_done", "progress_bytes_total", "progress_files_done", "progress_files_total")


def upgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            for name in COLUMNS:
                batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            for name in COLUMNS:
                batch.drop_column(name)
