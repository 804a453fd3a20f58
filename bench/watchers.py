"""Following a load: N clients on WatchModel (REST, NDJSON) against N clients polling GET every 0.5 s (how `--wait`
followed a load before the stream existed), on one server and one PostgreSQL, while a loader reports progress through
the worker API as often as loaders do by default (every 5 s). Alternating rounds; each round follows a model of its own.

Measured: the server's CPU time per second of following (from /proc), and how long after a report was acknowledged
each client first saw it (or a later one).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from functools import partial
from pathlib import Path

import aiohttp
from grpclib.client import Channel

from bench import pgdb
from bench.common import Report, alternate, median, server_process, yes
from model_manager.proto.llmariner.models.server import v1 as pb

POLL_SECONDS = 0.5
REPORT_SECONDS = 5.0  # loader.progressInterval's default
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def _watch(session: aiohttp.ClientSession, url: str, seen: list[tuple[float, int]]) -> None:
    async with session.get(f"{url}:watch") as r:
        async for line in r.content:
            done = json.loads(line).get("loading_progress", {}).get("bytes_done", 0)
            if not seen or done > seen[-1][1]:
                seen.append((time.monotonic(), done))


async def _poll(session: aiohttp.ClientSession, url: str, seen: list[tuple[float, int]]) -> None:
    await asyncio.sleep(random.uniform(0, POLL_SECONDS))  # independent clients: not in step
    while True:
        async with session.get(url, params={"include_loading_model": "true"}) as r:
            done = (await r.json()).get("loading_progress", {}).get("bytes_done", 0)
        if not seen or done > seen[-1][1]:
            seen.append((time.monotonic(), done))
        await asyncio.sleep(POLL_SECONDS)


async def _round(
    mode: str, ports: dict[str, int], pid: int, clients: int, seconds: float, n: list[int]
) -> dict[str, float]:
    n[0] += 1
    model_id = f"org/follow-{mode}-{n[0]}"
    base = f"http://127.0.0.1:{ports['httpPort']}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        body = {"id": model_id, "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"}
        async with session.post(f"{base}/v1/models", json=body) as r:
            assert r.status == 200, await r.text()
        async with Channel("127.0.0.1", ports["workerServiceGrpcPort"]) as channel:
            worker = pb.ModelsWorkerServiceStub(channel)
            claim = await worker.acquire_unloaded_base_model(pb.AcquireUnloadedBaseModelRequest(holder="bench"))
            assert claim.base_model_id == model_id, claim

            async def report(done: int) -> float:
                progress = pb.LoadingProgress(bytes_done=done, bytes_total=1 << 40, files_done=0, files_total=1)
                req = pb.UpdateBaseModelLoadingStatusRequest(
                    id=model_id, status_message=f"{done}", progress=progress, attempt=claim.attempt
                )
                await worker.update_base_model_loading_status(req)
                return time.monotonic()

            follow = _watch if mode == "watch" else _poll
            seen: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
            tasks = [asyncio.create_task(follow(session, f"{base}/v1/models/{model_id}", s)) for s in seen]
            await report(1)
            await asyncio.sleep(2)  # every client connected and caught up
            acked: dict[int, float] = {}
            cpu0, t0 = _cpu_seconds(pid), time.monotonic()
            done = 1
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(min(REPORT_SECONDS, seconds))
                done += 1
                acked[done] = await report(done)
            await asyncio.sleep(1)  # the last report reaches everyone
            cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.update_base_model_loading_status(
                pb.UpdateBaseModelLoadingStatusRequest(
                    id=model_id,
                    failure=pb.UpdateBaseModelLoadingStatusRequestFailure(reason="benchmark over"),
                    attempt=claim.attempt,
                )
            )
    delays = []
    missed = 0
    for observations in seen:
        for value, at in acked.items():
            first = next((t for t, v in observations if v >= value), None)
            if first is None:
                missed += 1
            else:
                delays.append(max(0.0, first - at))
    delays.sort()
    return {
        "cpu": cpu,
        "p50_ms": delays[len(delays) // 2] * 1000 if delays else 0.0,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000 if delays else 0.0,
        "missed": missed,
    }


def run(report: Report, tmp: Path, clients: int = 300, seconds: float = 30.0, rounds: int = 3) -> None:
    name = pgdb.bench_db_name("watch")
    pgdb.run(pgdb.create(name))
    server, ports = server_process(name, tmp, name="-watch")
    counter = [0]
    try:
        results = alternate(
            rounds,
            {
                mode: partial(
                    lambda m: asyncio.run(_round(m, ports, server.popen.pid, clients, seconds, counter)), mode
                )
                for mode in ("watch", "poll")
            },
        )
    finally:
        server.stop()
        pgdb.run(pgdb.drop(name))
    ours = {k: median([r[k] for r in results["watch"]]) for k in ("cpu", "p50_ms", "p99_ms", "missed")}
    base = {k: median([r[k] for r in results["poll"]]) for k in ("cpu", "p50_ms", "p99_ms", "missed")}
    label = f"following a load, {clients} clients"
    ratio = ours["cpu"] / base["cpu"] if base["cpu"] else 0.0
    report.add(
        label,
        "server CPU (cores)",
        f"{ours['cpu']:.2f}",
        f"{base['cpu']:.2f}",
        f"{ratio:.2f}x",
        "<= 0.5x",
        yes(ratio <= 0.5),
    )
    report.add(
        label,
        "report to client p50 / p99 ms",
        f"{ours['p50_ms']:.0f} / {ours['p99_ms']:.0f}",
        f"{base['p50_ms']:.0f} / {base['p99_ms']:.0f}",
        "",
        "",
        "",
    )
    report.notes.append(
        f"{label}: watchers on WatchModel against pollers of GET every {POLL_SECONDS:g} s, progress reported every "
        f"{REPORT_SECONDS:g} s; reports never seen: {ours['missed']:.0f} (watch) / {base['missed']:.0f} (poll)"
    )
