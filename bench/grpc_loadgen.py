"""gRPC load generator, run as its own process: concurrent unary calls on ModelsService for D seconds.

Prints one JSON line like bench.loadgen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from grpclib.client import Channel

from bench.common import latency_summary
from model_manager.proto.llmariner.models.server.v1 import GetModelRequest, ListModelsRequest, ModelsServiceStub


async def main(
    port: int, method: str, model_id: str, concurrency: int, duration: float, warmup: float
) -> dict[str, float]:
    channels = [Channel("127.0.0.1", port) for _ in range(4)]
    stubs = [ModelsServiceStub(c) for c in channels]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration

    async def worker(stub: ModelsServiceStub) -> None:
        nonlocal errors
        while (now := time.perf_counter()) < end:
            try:
                if method == "get":
                    await stub.get_model(GetModelRequest(id=model_id))
                else:
                    await stub.list_models(ListModelsRequest(limit=100))
                ok = True
            except Exception:  # counted, not fatal, in a load generator
                ok = False
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                errors += 0 if ok else 1

    await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(concurrency)))
    for c in channels:
        c.close()
    return latency_summary(latencies, errors, duration)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("method", choices=["get", "list"])
    p.add_argument("--id", default="")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.port, a.method, a.id, a.concurrency, a.duration, a.warmup))))
