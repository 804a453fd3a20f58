"""REST listing: GET /v1/models?limit=100 on PostgreSQL with 1,000 and 100,000 models, against a bare aiohttp app
returning a pre-built body of the same size, under the same load generator in a separate process."""

from __future__ import annotations

import sys
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from bench import pgdb
from bench.common import (
    Process,
    Report,
    alternate,
    free_port,
    medians,
    report_load,
    run_json,
    server_process,
    wait_http,
    yes,
)


def _load(url: str, seconds: float, warmup: float) -> dict[str, Any]:
    result: dict[str, Any] = run_json(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            url,
            "--connections",
            "32",
            "--duration",
            str(seconds),
            "--warmup",
            str(warmup),
        ]
    )
    return result


def run(
    report: Report,
    tmp: Path,
    sizes: tuple[int, ...] = (1_000, 100_000),
    seconds: float = 5.0,
    warmup: float = 1.0,
    rounds: int = 3,
) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        name = pgdb.bench_db_name(f"rest{size}")
        pgdb.run(pgdb.create(name))
        pgdb.run(pgdb.fill(name, size))
        server, ports = server_process(name, tmp)
        url = f"http://127.0.0.1:{ports['httpPort']}/v1/models?limit=100"
        body = tmp / f"body-{size}.json"
        with urllib.request.urlopen(url) as r:
            body.write_bytes(r.read())
        port = free_port()
        baseline = Process([sys.executable, "-m", "bench.baseline_rest", str(body), str(port)], tmp / "baseline.log")
        base_url = f"http://127.0.0.1:{port}/v1/models?limit=100"
        try:
            wait_http(base_url, baseline)
            results = alternate(
                rounds,
                {"ours": partial(_load, url, seconds, warmup), "baseline": partial(_load, base_url, seconds, warmup)},
            )
        finally:
            server.stop()
            baseline.stop()
            pgdb.run(pgdb.drop(name))
        out[size] = {name: medians(runs) for name, runs in results.items()}
        report_load(report, f"REST list, {size:,} models", "requests/s", out[size]["ours"], out[size]["baseline"])
    if len(sizes) == 2:
        small, large = (out[s]["ours"]["p99_ms"] for s in sizes)
        growth = large / small if small else 0.0
        report.add(
            "REST list",
            f"p99 at {sizes[1]:,} / p99 at {sizes[0]:,}",
            f"{large:.1f} / {small:.1f} ms",
            "",
            f"{growth:.2f}x",
            "<= 1.3x",
            yes(growth <= 1.3),
        )
    return out
