"""REST GetModel as an inference gateway calls it: 100 models in use, asked for in turn, against the honest peer
(bench/peer.py) on the same PostgreSQL, idle and while 20 writes a second land on 100 *other* models of the same
tenant (what a few loaders reporting progress do). The writes go straight to the database, to our rows and to the
peer's alike, so both servers see the same load and only their read paths differ.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from bench import loaders, pgdb
from bench.common import Process, Report, alternate, free_port, median, medians, server_process, wait_http, yes

ROTATE = """
local i = 0
request = function()
  i = (i % {n}) + 1
  return wrk.format("GET", string.format("/v1/models/org-model-%07d", i))
end
"""


@contextmanager
def writing(db: str, first: int, count: int, per_second: float) -> Iterator[list[int]]:
    """Update models first..first+count-1 in turn, `per_second` a second, in our table and the peer's."""
    stop = threading.Event()
    done = [0]

    async def write() -> None:
        conn = await asyncpg.connect(pgdb.async_url(db).replace("postgresql+asyncpg", "postgresql"))
        try:
            n = 0
            while not stop.is_set():
                model_id = f"org-model-{first + n % count:07d}"
                message = f"downloaded {n} MiB"
                await conn.execute(
                    "UPDATE base_models SET loading_status_message = $1 WHERE model_id = $2", message, model_id
                )
                await conn.execute(
                    "UPDATE peer_models SET loading_status_message = $1 WHERE model_id = $2", message, model_id
                )
                n += 1
                done[0] = n
                await asyncio.sleep(1 / per_second)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(write(),), daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(10)


def _wrk(url: str, script: Path, seconds: float, warmup: float) -> dict[str, float]:
    return loaders.wrk(url, seconds, warmup, script=script)


def run(
    report: Report,
    tmp: Path,
    models: int = 1_000,
    in_use: int = 100,
    writes_per_second: float = 20.0,
    seconds: float = 5.0,
    warmup: float = 1.0,
    rounds: int = 7,
) -> None:
    name = pgdb.bench_db_name("inuse")
    pgdb.run(pgdb.create(name))
    pgdb.run(pgdb.fill(name, models))
    pgdb.run(_prepare_peer(name))
    script = tmp / "rotate.lua"
    script.write_text(ROTATE.replace("{n}", str(in_use)))
    procs: list[Process] = []
    try:
        pool = {"poolSize": 30, "maxOverflow": 0}
        cold, cold_ports = server_process(name, tmp, extra={"cache": {"enable": False}}, name="-cold", database=pool)
        cached, cached_ports = server_process(name, tmp, name="-cached", database=pool)
        procs += [cold, cached]
        peer_ports = {"httpPort": free_port(), "grpcPort": free_port(), "workerServiceGrpcPort": free_port()}
        peer = Process(
            [sys.executable, "-m", "bench.peer", "serve", name, *(str(p) for p in peer_ports.values())],
            tmp / "peer-inuse.log",
        )
        procs.append(peer)
        wait_http(f"http://127.0.0.1:{peer_ports['httpPort']}/readyz", peer)
        variants: dict[str, Callable[[], Any]] = {
            v: partial(_wrk, f"http://127.0.0.1:{ports['httpPort']}/", script, seconds, warmup)
            for v, ports in (("cold", cold_ports), ("cached", cached_ports), ("peer", peer_ports))
        }
        label = f"REST get, {in_use} models in use of {models:,}"
        _rows(report, label, alternate(rounds, variants))
        with writing(name, in_use + 1, in_use, writes_per_second) as done:
            under = alternate(rounds, variants)
        _rows(report, f"{label}, {writes_per_second:g} writes/s to other models", under)
        report.notes.append(f"{label}: {done[0]} writes landed on other models during the runs under writes")
    finally:
        for proc in procs:
            proc.stop()
        pgdb.run(pgdb.drop(name))


def _rows(report: Report, label: str, runs: dict[str, list[dict[str, float]]]) -> None:
    """Medians of each variant's throughput, and the median of the per-round ratios: each round runs ours and the
    peer back to back, so a ratio within a round is what drift on a shared machine disturbs least."""
    cold, cached, peer = (medians(runs[k]) for k in ("cold", "cached", "peer"))
    rps = f"{peer['rps']:.0f}"
    for variant, unit, target in (("cached", "requests/s, cached", 1.5), ("cold", "requests/s, cache off", 0.8)):
        ratio = median([o["rps"] / p["rps"] for o, p in zip(runs[variant], runs["peer"], strict=True) if p["rps"]])
        ours = cached if variant == "cached" else cold
        report.add(label, unit, f"{ours['rps']:.0f}", rps, f"{ratio:.2f}x", f">= {target}x", yes(ratio >= target))
    for variant, result in (("cache off", cold), ("cached", cached), ("peer", peer)):
        if result["errors"]:
            report.notes.append(f"{label}, {variant}: {result['errors']:.0f} failed requests")


async def _prepare_peer(name: str) -> None:
    from bench.peer import prepare

    await prepare(name)
