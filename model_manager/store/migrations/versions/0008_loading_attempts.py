"""Keep the reason of every failed loading attempt, and let a retry start a fresh set of attempts.

`attempt` stays the claim counter that fences stale loaders, so it never goes back; a retry moves `attempt_floor`
up to it instead, and the attempts a model has used are `attempt - attempt_floor`.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("attempt_floor", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column("attempt_log", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    for table in ("base_models", "models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("attempt_log")
            batch.drop_column("attempt_floor")
