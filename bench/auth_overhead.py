"""What API keys cost: GET one model by REST on PostgreSQL, from a server with auth on (every request carries a
key) against the same server with auth off, same database and rows, same load generator, alternating."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bench import loaders, pgdb
from bench.common import ROOT, Report, alternate, medians, report_load, server_process


def _load(url: str, seconds: float, warmup: float, key: str = "") -> dict[str, Any]:
    return loaders.wrk(url, seconds, warmup, headers=(f"Authorization: Bearer {key}",) if key else ())


def run(
    report: Report, tmp: Path, models: int = 1_000, seconds: float = 5.0, warmup: float = 1.0, rounds: int = 3
) -> None:
    name = pgdb.bench_db_name("auth")
    pgdb.run(pgdb.create(name))
    pgdb.run(pgdb.fill(name, models))
    secured, secured_ports = server_process(name, tmp, extra={"auth": {"enable": True}}, name="-auth")
    open_, open_ports = server_process(name, tmp, name="-open")
    try:
        config = tmp / f"server-{name}-auth.yaml"
        made = subprocess.run(
            [sys.executable, "-m", "model_manager", "keys", "create", "--config", str(config), "--role", "reader"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        key = made.stdout.strip()
        path = "/v1/models/org-model-0000001"
        results = alternate(
            rounds,
            {
                "auth": partial(_load, f"http://127.0.0.1:{secured_ports['httpPort']}{path}", seconds, warmup, key),
                "open": partial(_load, f"http://127.0.0.1:{open_ports['httpPort']}{path}", seconds, warmup),
            },
        )
    finally:
        secured.stop()
        open_.stop()
        pgdb.run(pgdb.drop(name))
    auth, off = medians(results["auth"]), medians(results["open"])
    report_load(report, "REST get, auth on vs off", "requests/s", auth, off, target=0.9)
