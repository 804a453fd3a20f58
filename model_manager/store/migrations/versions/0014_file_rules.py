"""Remember, on a requested base model, which of its source's files to store: the request's include/exclude
patterns and whether pickles may be stored, as JSON ("" for the default selection).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.add_column(sa.Column("file_rule", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.drop_column("file_rule")
