"""What API keys cost: GET one model by REST on PostgreSQL, from a server with auth on (every request carries a
key) against the same server with auth off, same database and rows, same load generator, alternating."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bench import loaders, pgdb
from bench.common import ROOT, Report, alternate, medians, server_process, yes


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
    ours, base = medians(results["auth"]), medians(results["open"])
    ratio = ours["rps"] / base["rps"] if base["rps"] else 0.0
    label = "REST get, auth on vs off"
    report.add(
        label, "requests/s", f"{ours['rps']:.0f}", f"{base['rps']:.0f}", f"{ratio:.2f}x", ">= 0.9x", yes(ratio >= 0.9)
    )
    report.add(
        label,
        "p50 / p99 ms",
        f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f}",
        f"{base['p50_ms']:.1f} / {base['p99_ms']:.1f}",
        "",
        "",
        "",
    )
    if ours["errors"] or base["errors"]:
        report.notes.append(f"{label}: {ours['errors']:.0f} / {base['errors']:.0f} failed requests")
