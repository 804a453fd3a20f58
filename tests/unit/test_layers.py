"""What the import contracts promise, checked at run time too: the loader role loads no database code."""

from __future__ import annotations

import subprocess
import sys


def test_loader_role_imports_no_database_code() -> None:
    probe = (
        "import sys, model_manager.loader.runner\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'asyncpg', 'aiosqlite')"
        " or m.startswith(('model_manager.store', 'model_manager.service')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"the loader role imported database or service modules: {out}"


def test_service_imports_no_http_framework() -> None:
    probe = "import sys, model_manager.service.models, model_manager.service.worker\nprint('aiohttp' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"
