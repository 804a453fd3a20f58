"""Versions scoped to what an answer depends on, replacing the one catalogue version every write bumped:

- every model row carries a `version`, a number no other row state ever had (a sequence on PostgreSQL, a counter
  row on SQLite), set again by every insert and update: the answer for one model id is valid while the versions
  of the rows with that id stand, so writes to other models leave it alone;
- `tenant_versions` counts, per tenant, the writes that may change a listing of loaded models (`loaded`) and every
  write (`changed`, which listings of loading models and watchers go by).

A writer now locks only its own tenant's counter row, at commit (a deferred trigger, as 0006 did for the global
row), instead of one row that every writer in the deployment took in turn.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("base_models", "models")
LOADED = "({row}.loading_status IN (0, 3))"  # UNSPECIFIED (rows of old versions) and SUCCEEDED


def upgrade() -> None:
    op.create_table(
        "tenant_versions",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("loaded", sa.BigInteger(), nullable=False),
        sa.Column("changed", sa.BigInteger(), nullable=False),
    )
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "INSERT INTO tenant_versions (tenant_id, loaded, changed) SELECT tenant_id, 1, 1 FROM "
        "(SELECT tenant_id FROM base_models UNION SELECT tenant_id FROM models) AS tenants"
    )
    _drop_catalog_version()
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def _postgresql() -> None:
    op.execute("CREATE SEQUENCE model_row_versions")
    for table in TABLES:
        op.execute(f"UPDATE {table} SET version = nextval('model_row_versions')")
    op.execute("""
        CREATE FUNCTION stamp_model_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.version := nextval('model_row_versions'); RETURN NEW; END $$""")
    # Shadowing makes an insert or a delete of any row count for listings of loaded models; an update counts when
    # the row was or becomes loaded (a progress report on a loading model does not).
    op.execute(f"""
        CREATE FUNCTION bump_tenant_version() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            tenant text := CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
            listed int := CASE WHEN TG_OP <> 'UPDATE' OR {LOADED.format(row="OLD")} OR {LOADED.format(row="NEW")}
                          THEN 1 ELSE 0 END;
        BEGIN
            INSERT INTO tenant_versions AS v (tenant_id, loaded, changed) VALUES (tenant, 1, 1)
            ON CONFLICT (tenant_id) DO UPDATE SET loaded = v.loaded + listed, changed = v.changed + 1;
            RETURN NULL;
        END $$""")
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_stamp BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION stamp_model_version()"
        )
        # Deferred to commit, as 0006's was: the counter row is locked last and only until the commit ends.
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {table}_tenant_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_tenant_version()"
        )


def _sqlite() -> None:
    # SQLite writes one transaction at a time, so a counter serves as the sequence: the row of tenant "" (no tenant
    # has that id) counts row versions in its `changed`.
    base = "(SELECT coalesce(max(id), 0) FROM base_models)"
    op.execute("UPDATE base_models SET version = id")
    op.execute(f"UPDATE models SET version = id + {base}")  # above every base model's: unique
    op.execute(
        "INSERT INTO tenant_versions (tenant_id, loaded, changed) VALUES "
        f"('', 0, {base} + (SELECT coalesce(max(id), 0) FROM models))"
    )
    stamp = (
        "UPDATE tenant_versions SET changed = changed + 1 WHERE tenant_id = ''; "
        "UPDATE {table} SET version = (SELECT changed FROM tenant_versions WHERE tenant_id = '') WHERE id = NEW.id;"
    )
    bump = (
        "INSERT INTO tenant_versions (tenant_id, loaded, changed) VALUES ({row}.tenant_id, 1, 1) "
        "ON CONFLICT (tenant_id) DO UPDATE SET loaded = loaded + ({listed}), changed = changed + 1;"
    )
    listed_on_update = f"{LOADED.format(row='OLD')} OR {LOADED.format(row='NEW')}"
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_stamp_insert AFTER INSERT ON {table} BEGIN "
            f"{stamp.format(table=table)} {bump.format(row='NEW', listed='1')} END"
        )
        # The stamp's own update sets a new version: the WHEN keeps it from counting as a second write.
        op.execute(
            f"CREATE TRIGGER {table}_stamp_update AFTER UPDATE ON {table} WHEN NEW.version = OLD.version BEGIN "
            f"{stamp.format(table=table)} {bump.format(row='NEW', listed=listed_on_update)} END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_stamp_delete AFTER DELETE ON {table} BEGIN "
            f"{bump.format(row='OLD', listed='1')} END"
        )


def _drop_catalog_version() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS bump_catalog_version()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_version_{event}")
    op.drop_table("catalog_version")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_stamp ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_tenant_version ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_stamp_{event}")
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version")
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS stamp_model_version()")
        op.execute("DROP FUNCTION IF EXISTS bump_tenant_version()")
        op.execute("DROP SEQUENCE IF EXISTS model_row_versions")
    op.drop_table("tenant_versions")
    # The global version of 0006, as it was.
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, 1)")
    bump = "UPDATE catalog_version SET version = version + 1 WHERE id = 1;"
    if postgresql:
        op.execute(
            f"CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {bump} "
            "RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {table}_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_catalog_version()"
            )
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"CREATE TRIGGER {table}_version_{event} AFTER {event.upper()} ON {table} BEGIN {bump} END")
