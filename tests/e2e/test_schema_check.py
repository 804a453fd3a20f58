"""A server refuses a database whose schema is older than its code, at start and with the command that fixes it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.store.migrate import _alembic_config


@pytest.fixture
async def old_database(pg_url: str) -> Any:
    """A database migrated only up to 0004 (before API keys)."""
    url = make_url(pg_url)
    name = f"mm_old_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_async_engine(url.set(database=name))
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0004"))
    await engine.dispose()
    yield {"host": url.host, "port": url.port or 5432, "username": url.username, "database": name}
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.dispose()


def test_an_old_schema_is_refused_until_migrated(tmp_path: Path, old_database: dict[str, Any]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"database": old_database, "httpPort": 0, "loader": {"enable": False}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "model_manager", *args, "--config", str(path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    r = cli("run")
    assert r.returncode == 1, r.stderr
    assert "schema is at revision 0004 but this version needs" in r.stderr and "model-manager migrate" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("keys", "list")
    assert r.returncode == 1 and "model-manager migrate" in r.stderr
    assert cli("migrate").returncode == 0
    r = cli("keys", "list")
    assert r.returncode == 0, r.stderr
