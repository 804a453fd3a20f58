"""The benchmark scripts run end to end at tiny sizes (no timing is asserted), so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_at_smoke_size(pg_url: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for row in (
        "REST list limit=100, 10 models",
        "REST list limit=100, 50 models",
        "REST get one model, 10 models",
        "gRPC GetModel, 10 models",
        "gRPC ListModels limit=100, 10 models",
        "gRPC worker ListModels (all), 10 models",
        "REST get, auth on vs off",
        "transfer 0.0078125 GiB",
        "claims, 8 acquirers, 50 models",
        "following a load, 5 clients",
        "GGUF q8_0 of a 0 MiB bf16 Llama",
    ):
        assert row in r.stdout, r.stdout
    assert "| 0 |" in r.stdout  # no model claimed twice
