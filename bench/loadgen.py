"""HTTP load generator, run as its own process: N connections hammer one URL for D seconds.

Prints one JSON line: {"requests": n, "rps": r, "p50_ms": x, "p99_ms": y, "errors": e}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from bench.common import latency_summary


async def main(
    url: str, connections: int, duration: float, warmup: float, headers: dict[str, str] | None = None
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        end = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < end:
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                done = time.perf_counter()
                if now >= measure_from:
                    latencies.append(done - now)
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return latency_summary(latencies, errors, duration)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--header", action="append", default=[], help="'Name: value', sent with every request")
    a = p.parse_args()
    headers = dict(h.split(": ", 1) for h in a.header)
    print(json.dumps(asyncio.run(main(a.url, a.connections, a.duration, a.warmup, headers))))
