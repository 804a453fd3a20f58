"""Base models share their files by content: a content key (source kind and resolved revision) on every loaded
base model, and the directory a load writes to, recorded while it loads.

Existing loaded models keep their paths. Each gets the content key (<kind>:<id>@<revision>) of the revision it
recorded, unless another
model of its tenant shares its path at a different revision: before this migration a load of another revision
overwrote the same directory, so such files are not known to be either revision and are never shared.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SUCCEEDED = 3
HUGGING_FACE, OLLAMA = 2, 3


def upgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.add_column(sa.Column("content_key", sa.String(512), nullable=False, server_default=""))
        batch.add_column(sa.Column("content_path", sa.Text(), nullable=False, server_default=""))
    op.create_index("ix_base_models_content", "base_models", ["tenant_id", "content_key"])
    for source, kind in ((HUGGING_FACE, "hugging-face"), (OLLAMA, "ollama")):
        op.execute(
            sa.text(
                "UPDATE base_models SET content_key = :kind || ':' || model_id || '@' || revision"
                " WHERE loading_status = :succeeded AND source_repository = :source AND revision != ''"
                " AND NOT EXISTS (SELECT 1 FROM base_models o WHERE o.tenant_id = base_models.tenant_id"
                " AND o.path = base_models.path AND o.revision != base_models.revision)"
            ).bindparams(kind=kind, succeeded=SUCCEEDED, source=source)
        )


def downgrade() -> None:
    op.drop_index("ix_base_models_content", "base_models")
    with op.batch_alter_table("base_models") as batch:
        batch.drop_column("content_path")
        batch.drop_column("content_key")
