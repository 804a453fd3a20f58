"""Per-scope model counters kept by triggers, so total_items costs the same whatever the catalogue's size;
and an index to find a project's own base models.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# kind: 0 base model, 1 fine-tuned model. loaded: loading_status in (0, 3). Base models count as published.
_KEYS = {
    "base_models": ("0", "1"),
    "models": ("1", "CASE WHEN {row}.is_published THEN 1 ELSE 0 END"),
}


def _loaded(row: str) -> str:
    return f"CASE WHEN {row}.loading_status IN (0, 3) THEN 1 ELSE 0 END"


def _bump(table: str, row: str, delta: str, upsert: str) -> str:
    kind, published = _KEYS[table]
    return (
        "INSERT INTO model_counts (tenant_id, project_id, kind, loaded, published, n) VALUES "
        f"({row}.tenant_id, {row}.project_id, {kind}, {_loaded(row)}, {published.format(row=row)}, {delta}) "
        f"ON CONFLICT (tenant_id, project_id, kind, loaded, published) DO UPDATE SET n = {upsert}.n + {delta};"
    )


def upgrade() -> None:
    op.create_table(
        "model_counts",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(256), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("loaded", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "project_id", "kind", "loaded", "published"),
    )
    op.create_index("ix_base_models_project", "base_models", ["tenant_id", "project_id", "model_id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _KEYS:
        watched = "tenant_id, project_id, loading_status" + (", is_published" if table == "models" else "")
        if postgres:
            op.execute(f"""
                CREATE FUNCTION {table}_count() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF TG_OP IN ('UPDATE', 'DELETE') THEN {_bump(table, "OLD", "-1", "model_counts")} END IF;
                  IF TG_OP IN ('UPDATE', 'INSERT') THEN {_bump(table, "NEW", "1", "model_counts")} END IF;
                  RETURN NULL;
                END $$""")
            for event in ("INSERT", f"UPDATE OF {watched}", "DELETE"):
                name = event.split()[0].lower()
                op.execute(
                    f"CREATE TRIGGER {table}_count_{name} AFTER {event} ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {table}_count()"
                )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} BEGIN "
                f"{_bump(table, 'NEW', '1', 'model_counts')} END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} BEGIN "
                f"{_bump(table, 'OLD', '-1', 'model_counts')} END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF {watched} ON {table} BEGIN "
                f"{_bump(table, 'OLD', '-1', 'model_counts')} {_bump(table, 'NEW', '1', 'model_counts')} END"
            )
        # Rows that exist already.
        kind, published = _KEYS[table]
        op.execute(
            "INSERT INTO model_counts (tenant_id, project_id, kind, loaded, published, n) "
            f"SELECT tenant_id, project_id, {kind}, {_loaded(table)}, {published.format(row=table)}, COUNT(*) "
            f"FROM {table} GROUP BY tenant_id, project_id, {_loaded(table)}, {published.format(row=table)}"
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _KEYS:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {table}_count()")
    op.drop_index("ix_base_models_project", "base_models")
    op.drop_table("model_counts")
