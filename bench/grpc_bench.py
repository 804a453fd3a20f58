"""gRPC GetModel and ListModels on the public port, against a bare grpclib service returning constant messages."""

from __future__ import annotations

import asyncio
import sys
from functools import partial
from pathlib import Path
from typing import Any

from grpclib.client import Channel

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
    wait_port,
)
from model_manager.proto.llmariner.models.server import v1 as pb


def _load(port: int, method: str, model_id: str, seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = run_json(
        [
            sys.executable,
            "-m",
            "bench.grpc_loadgen",
            str(port),
            method,
            "--id",
            model_id,
            "--duration",
            str(seconds),
            "--warmup",
            str(min(1.0, seconds / 2)),
        ]
    )
    return result


async def _responses(port: int, model_id: str) -> tuple[bytes, bytes]:
    async with Channel("127.0.0.1", port) as ch:
        stub = pb.ModelsServiceStub(ch)
        model = await stub.get_model(pb.GetModelRequest(id=model_id))
        listing = await stub.list_models(pb.ListModelsRequest(limit=100))
    return bytes(model), bytes(listing)


def run(report: Report, tmp: Path, models: int = 1_000, seconds: float = 5.0, rounds: int = 3) -> None:
    name = pgdb.bench_db_name("grpc")
    pgdb.run(pgdb.create(name))
    pgdb.run(pgdb.fill(name, models))
    server, ports = server_process(name, tmp)
    model_id = f"org-model-{models // 2:07d}"
    baseline: Process | None = None
    try:
        model_bytes, list_bytes = asyncio.run(_responses(ports["grpcPort"], model_id))
        (tmp / "model.bin").write_bytes(model_bytes)
        (tmp / "list.bin").write_bytes(list_bytes)
        port = free_port()
        baseline = Process(
            [sys.executable, "-m", "bench.baseline_grpc", str(tmp / "model.bin"), str(tmp / "list.bin"), str(port)],
            tmp / "baseline-grpc.log",
        )
        wait_port(port, baseline)
        for method, label in (("get", "GetModel"), ("list", "ListModels limit=100")):
            results = alternate(
                rounds,
                {
                    "ours": partial(_load, ports["grpcPort"], method, model_id, seconds),
                    "baseline": partial(_load, port, method, model_id, seconds),
                },
            )
            report_load(report, f"gRPC {label}", "calls/s", medians(results["ours"]), medians(results["baseline"]))
    finally:
        server.stop()
        if baseline is not None:
            baseline.stop()
        pgdb.run(pgdb.drop(name))
