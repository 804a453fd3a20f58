"""A catalogue version that every write to a model table bumps, in the same transaction: servers cache encoded
answers under it and reuse them while it stands, so every replica sees a write as soon as it commits.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("base_models", "models")
BUMP = "UPDATE catalog_version SET version = version + 1 WHERE id = 1;"


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        # Deferred to commit: the one version row is locked last, after every row lock the transaction takes, and
        # only until the commit ends. Bumped as a transaction's first write instead, it would be held while that
        # transaction waits for model rows that another one holds while waiting for the version: a deadlock.
        op.execute(f"""
            CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {BUMP} RETURN NULL; END $$""")
        for table in TABLES:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_catalog_version()"
            )
    else:
        for table in TABLES:  # SQLite has row triggers only
            for event in ("insert", "update", "delete"):
                op.execute(f"CREATE TRIGGER {table}_version_{event} AFTER {event.upper()} ON {table} BEGIN {BUMP} END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS bump_catalog_version()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_version_{event}")
    op.drop_table("catalog_version")
