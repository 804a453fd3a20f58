"""Load generators that are not the bottleneck: wrk (C) for REST, and grpcio clients in several processes for gRPC.

Both return {"rps", "p50_ms", "p99_ms", "errors"} for the measured window.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, latency_summary

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(
    url: str,
    seconds: float,
    warmup: float,
    connections: int = 32,
    headers: tuple[str, ...] = (),
    script: Path | None = None,
) -> dict[str, float]:
    """wrk with one thread and `connections` connections (after a warm-up run whose numbers are dropped); a Lua
    `script` may choose each request's path."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (Debian package wrk)")
    base = ["wrk", "-t1", f"-c{connections}", *(arg for h in headers for arg in ("-H", h))]
    if script is not None:
        base += ["-s", str(script)]
    if warmup > 0:
        subprocess.run([*base, f"-d{max(1, round(warmup))}s", url], capture_output=True, check=True)
    out = subprocess.run(
        [*base, f"-d{max(1, round(seconds))}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": float(failed)}


def generate_grpcio(out: Path) -> Path:
    """grpcio stubs generated from our .proto, as an independent client has them."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    proto = "llmariner/models/server/v1/model_manager_service.proto"
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed")
    return out


def grpc(
    port: int, method: str, model_id: str, seconds: float, warmup: float, gen: Path, processes: int = 2
) -> dict[str, Any]:
    """`processes` grpcio client processes, 16 calls in flight each, their latencies merged."""
    command = [sys.executable, "-m", "bench.grpcio_client", str(port), method, model_id, str(seconds), str(warmup)]
    children = [
        subprocess.Popen([*command, str(gen)], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    latencies: list[float] = []
    errors = 0
    for child in children:
        out, _ = child.communicate(timeout=seconds + warmup + 120)
        if child.returncode != 0:
            raise RuntimeError(f"grpcio client failed ({child.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
        latencies += result["latencies"]
        errors += result["errors"]
    return latency_summary(latencies, errors, seconds)
