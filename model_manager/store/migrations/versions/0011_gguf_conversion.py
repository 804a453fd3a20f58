"""Remember, on a requested base model, the GGUF tensor type its loader converts it to once its files are stored
("" for none).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.add_column(sa.Column("convert_gguf", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.drop_column("convert_gguf")
