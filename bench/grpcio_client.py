"""One grpcio client process of bench.loaders.grpc: 16 calls in flight for D seconds; prints its latencies."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from typing import Any

import grpc


async def main(port: int, method: str, model_id: str, seconds: float, warmup: float, gen: str) -> dict[str, Any]:
    sys.path.insert(0, gen)
    pb2 = importlib.import_module("llmariner.models.server.v1.model_manager_service_pb2")
    pb2_grpc = importlib.import_module("llmariner.models.server.v1.model_manager_service_pb2_grpc")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    if method == "get":
        stub = pb2_grpc.ModelsServiceStub(channel)
        call, request = stub.GetModel, pb2.GetModelRequest(id=model_id)
    elif method == "list":
        stub = pb2_grpc.ModelsServiceStub(channel)
        call, request = stub.ListModels, pb2.ListModelsRequest(limit=100)
    else:
        stub = pb2_grpc.ModelsWorkerServiceStub(channel)
        call, request = stub.ListModels, pb2.ListModelsRequest()
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds

    async def worker() -> None:
        nonlocal errors
        while (now := time.perf_counter()) < end:
            try:
                await call(request)
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                errors += 0 if ok else 1

    await asyncio.gather(*(worker() for _ in range(16)))
    await channel.close()
    return {"latencies": latencies, "errors": errors}


if __name__ == "__main__":
    port, method, model_id, seconds, warmup, gen = sys.argv[1:7]
    print(json.dumps(asyncio.run(main(int(port), method, model_id, float(seconds), float(warmup), gen))))
