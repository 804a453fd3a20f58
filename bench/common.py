"""What every benchmark shares: processes on free ports, A/B rounds, medians, the results table."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}"


@dataclass
class Row:
    benchmark: str
    measure: str
    ours: str
    baseline: str
    ratio: str
    target: str = ""
    met: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))

    def table(self) -> str:
        head = "| benchmark | measure | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|---|\n"
        body = "".join(
            f"| {r.benchmark} | {r.measure} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |\n"
            for r in self.rows
        )
        return head + body

    def markdown(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        notes = "".join(f"- {n}\n" for n in self.notes)
        return f"# Benchmark results\n\n{stamp}; {machine()}\n\n{self.table()}\n{notes}"


def latency_summary(latencies: list[float], errors: int, duration: float) -> dict[str, float]:
    """What both load generators print: throughput and latency percentiles of the measured window."""
    latencies = sorted(latencies)
    n = len(latencies)
    return {
        "requests": n,
        "rps": n / duration,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "errors": errors,
    }


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: median([r[k] for r in runs]) for k in ("rps", "p50_ms", "p99_ms", "errors")}


def report_load(
    report: Report, label: str, unit: str, ours: dict[str, float], base: dict[str, float], target: float = 0.5
) -> None:
    """Two rows for a load test against its baseline: throughput against `target`, then latencies."""
    ratio = ours["rps"] / base["rps"] if base["rps"] else 0.0
    met = yes(ratio >= target)
    report.add(label, unit, f"{ours['rps']:.0f}", f"{base['rps']:.0f}", f"{ratio:.2f}x", f">= {target}x", met)
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


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def alternate(rounds: int, variants: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
    """Run each variant once per round, in turn (A B A B ...), so drift on a noisy machine hits all alike."""
    results: dict[str, list[Any]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run())
    return results


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


class Process:
    """A child process with its output in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.log = log
        self.popen = subprocess.Popen(
            args,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=cwd or ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_http(url: str, proc: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"process exited:\n{proc.output()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout}s:\n{proc.output()}")


def wait_port(port: int, proc: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"process exited:\n{proc.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not up after {timeout}s:\n{proc.output()}")


def server_process(
    db_name: str,
    tmp: Path,
    role: str = "server",
    extra: dict[str, Any] | None = None,
    name: str = "",
    database: dict[str, Any] | None = None,
) -> tuple[Process, dict[str, int]]:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    ports = {"httpPort": free_port(), "grpcPort": free_port(), "workerServiceGrpcPort": free_port()}
    cfg = {
        **ports,
        "database": {
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "username": url.username or "postgres",
            "database": db_name,
            **(database or {}),
        },
        "objectStore": {"local": {"path": str(tmp / "objects")}},
        "loader": {"enable": False},
        # The benchmarks request models by id alone; the peers ask no source either.
        "loading": {"checkSource": False},
        # The peers log nothing per request; neither do ours here (logging.requests is on by default).
        "logging": {"requests": False},
        **(extra or {}),
    }
    path = tmp / f"server-{db_name}{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = Process(
        [sys.executable, "-m", "model_manager", "run", "--config", str(path), "--role", role],
        tmp / f"server-{db_name}{name}.log",
    )
    wait_http(f"http://127.0.0.1:{ports['httpPort']}/readyz", proc)
    return proc, ports


def run_json(args: list[str], timeout: float = 600) -> Any:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
