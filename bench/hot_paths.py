"""The hot paths against an honest peer (bench/peer.py: hand-written, plain asyncpg, same PostgreSQL, same rows,
same response bytes), measured alternately in one run:

- ours with the response cache off ("cold": every request reads the database, as the peer does), target >= 0.8x
  the peer's throughput with p99 <= 1.25x the peer's;
- ours with the cache on ("cached": repeated requests between writes), target >= 1.5x the peer's throughput;
- the constant-body servers of earlier benchmarks, kept as the framework's ceiling.

REST goes through wrk; gRPC through grpcio clients in two processes.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from bench import loaders, pgdb
from bench.common import Process, Report, alternate, free_port, medians, server_process, wait_http, wait_port, yes
from model_manager.proto.llmariner.models.server import v1 as pb


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as r:
        return bytes(r.read())


async def _grpc_answers(port: int, worker: int, model_id: str) -> tuple[bytes, bytes, bytes]:
    async with Channel("127.0.0.1", port) as ch, Channel("127.0.0.1", worker) as wch:
        stub = pb.ModelsServiceStub(ch)
        model = await stub.get_model(pb.GetModelRequest(id=model_id))
        listing = await stub.list_models(pb.ListModelsRequest(limit=100))
        everything = await pb.ModelsWorkerServiceStub(wch).list_models(pb.ListModelsRequest())
    return bytes(model), bytes(listing), bytes(everything)


def _same_answers(ours: dict[str, int], peer: dict[str, int], model_id: str) -> None:
    """The peer must do the same work: the same JSON and protobuf answers, byte for byte."""
    for path in ("/v1/models?limit=100", f"/v1/models/{model_id}"):
        a = _fetch(f"http://127.0.0.1:{ours['httpPort']}{path}")
        b = _fetch(f"http://127.0.0.1:{peer['httpPort']}{path}")
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            near = f"{a[at - 80 : at + 80]!r} / {b[at - 80 : at + 80]!r}"
            raise RuntimeError(f"the peer's answer to {path} differs from ours at byte {at}: {near}")
    mine = asyncio.run(_grpc_answers(ours["grpcPort"], ours["workerServiceGrpcPort"], model_id))
    theirs = asyncio.run(_grpc_answers(peer["grpcPort"], peer["workerServiceGrpcPort"], model_id))
    if mine != theirs:
        raise RuntimeError("the peer's gRPC answers differ from ours")


def _report(report: Report, label: str, runs: dict[str, list[dict[str, float]]], unit: str) -> dict[str, float]:
    cold, cached, peer = (medians(runs[k]) for k in ("cold", "cached", "peer"))

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    vs_peer = ratio(cold["rps"], peer["rps"])
    p99 = ratio(cold["p99_ms"], peer["p99_ms"])
    fast = ratio(cached["rps"], peer["rps"])
    rps = f"{peer['rps']:.0f}"
    report.add(
        label, f"{unit}, cache off", f"{cold['rps']:.0f}", rps, f"{vs_peer:.2f}x", ">= 0.8x", yes(vs_peer >= 0.8)
    )
    report.add(
        label,
        "p50 / p99 ms, cache off",
        f"{cold['p50_ms']:.1f} / {cold['p99_ms']:.1f}",
        f"{peer['p50_ms']:.1f} / {peer['p99_ms']:.1f}",
        f"{p99:.2f}x p99",
        "p99 <= 1.25x",
        yes(p99 <= 1.25),
    )
    report.add(label, f"{unit}, cached", f"{cached['rps']:.0f}", rps, f"{fast:.2f}x", ">= 1.5x", yes(fast >= 1.5))
    if "ceiling" in runs:
        top = medians(runs["ceiling"])["rps"]
        ceiling = f"{ratio(cached['rps'], top):.2f}x"
        report.add(label, f"{unit}, cached vs constant body (ceiling)", f"{cached['rps']:.0f}", f"{top:.0f}", ceiling)
    for name, result in (("cache off", cold), ("cached", cached), ("peer", peer)):
        if result["errors"]:
            report.notes.append(f"{label}, {name}: {result['errors']:.0f} failed requests")
    return cold


Ports = dict[str, dict[str, int]]


def _rest(ports: Ports, path: str, variants: tuple[str, ...], seconds: float, warmup: float) -> dict[str, Any]:
    return {
        v: partial(loaders.wrk, f"http://127.0.0.1:{ports[v]['httpPort']}{path}", seconds, warmup) for v in variants
    }


def _grpc(
    ports: Ports,
    key: str,
    method: str,
    model_id: str,
    variants: tuple[str, ...],
    seconds: float,
    warmup: float,
    gen: Path,
) -> dict[str, Any]:
    return {v: partial(loaders.grpc, ports[v][key], method, model_id, seconds, warmup, gen) for v in variants}


def run(
    report: Report,
    tmp: Path,
    sizes: tuple[int, ...] = (1_000, 100_000),
    seconds: float = 5.0,
    warmup: float = 1.0,
    rounds: int = 3,
) -> None:
    gen = loaders.generate_grpcio(tmp / "grpcio")
    p99_by_size: dict[int, float] = {}
    for size in sizes:
        name = pgdb.bench_db_name(f"hot{size}")
        pgdb.run(pgdb.create(name))
        pgdb.run(pgdb.fill(name, size))
        pgdb.run(_prepare_peer(name))
        procs: list[Process] = []
        try:
            # The peer's pool: 30 connections, no overflow. Three such pools stay under PostgreSQL's default
            # max_connections (100); with overflow, ours would be refused connections during the runs.
            pool = {"poolSize": 30, "maxOverflow": 0}
            cache_off = {"cache": {"enable": False}}
            cold, cold_ports = server_process(name, tmp, extra=cache_off, name="-cold", database=pool)
            cached, cached_ports = server_process(name, tmp, name="-cached", database=pool)
            procs += [cold, cached]
            peer_ports = {"httpPort": free_port(), "grpcPort": free_port(), "workerServiceGrpcPort": free_port()}
            peer = Process(
                [sys.executable, "-m", "bench.peer", "serve", name, *(str(p) for p in peer_ports.values())],
                tmp / f"peer-{size}.log",
            )
            procs.append(peer)
            wait_http(f"http://127.0.0.1:{peer_ports['httpPort']}/readyz", peer)
            model_id = f"org-model-{max(1, size // 2):07d}"
            _same_answers(cold_ports, peer_ports, model_id)
            ceiling_ports, ceiling = _ceilings(tmp, cold_ports, model_id, size)
            procs += ceiling
            ports: Ports = {"cold": cold_ports, "cached": cached_ports, "peer": peer_ports, "ceiling": ceiling_ports}

            three = ("cold", "cached", "peer")
            four = (*three, "ceiling")
            runs = alternate(rounds, _rest(ports, "/v1/models?limit=100", four, seconds, warmup))
            p99_by_size[size] = _report(report, f"REST list limit=100, {size:,} models", runs, "requests/s")["p99_ms"]
            if size == sizes[0]:
                timing = (seconds, warmup)
                paths = [
                    ("REST get one model", _rest(ports, f"/v1/models/{model_id}", three, *timing), "requests/s"),
                    ("gRPC GetModel", _grpc(ports, "grpcPort", "get", model_id, four, *timing, gen), "calls/s"),
                    (
                        "gRPC ListModels limit=100",
                        _grpc(ports, "grpcPort", "list", model_id, four, *timing, gen),
                        "calls/s",
                    ),
                    (
                        "gRPC worker ListModels (all)",
                        _grpc(ports, "workerServiceGrpcPort", "worker", model_id, three, *timing, gen),
                        "calls/s",
                    ),
                ]
                for label, variants, unit in paths:
                    _report(report, f"{label}, {size:,} models", alternate(rounds, variants), unit)
        finally:
            for proc in procs:
                proc.stop()
            pgdb.run(pgdb.drop(name))
    if len(sizes) == 2:
        small, large = (p99_by_size[s] for s in sizes)
        growth = large / small if small else 0.0
        report.add(
            "REST list, cache off",
            f"p99 at {sizes[1]:,} / p99 at {sizes[0]:,}",
            f"{large:.1f} / {small:.1f} ms",
            "",
            f"{growth:.2f}x",
            "<= 1.2x",
            yes(growth <= 1.2),
        )


async def _prepare_peer(name: str) -> None:
    from bench.peer import prepare

    await prepare(name)


def _ceilings(tmp: Path, ours: dict[str, int], model_id: str, size: int) -> tuple[dict[str, int], list[Process]]:
    """The constant-body servers: REST (aiohttp) and gRPC (grpclib) answering pre-built copies of our answers."""
    body = tmp / f"list-{size}.json"
    body.write_bytes(_fetch(f"http://127.0.0.1:{ours['httpPort']}/v1/models?limit=100"))
    model, listing, _ = asyncio.run(_grpc_answers(ours["grpcPort"], ours["workerServiceGrpcPort"], model_id))
    (tmp / "model.bin").write_bytes(model)
    (tmp / "list.bin").write_bytes(listing)
    ports = {"httpPort": free_port(), "grpcPort": free_port()}
    rest = Process([sys.executable, "-m", "bench.baseline_rest", str(body), str(ports["httpPort"])], tmp / "c-rest.log")
    grpc = Process(
        [
            sys.executable,
            "-m",
            "bench.baseline_grpc",
            str(tmp / "model.bin"),
            str(tmp / "list.bin"),
            str(ports["grpcPort"]),
        ],
        tmp / "c-grpc.log",
    )
    wait_http(f"http://127.0.0.1:{ports['httpPort']}/v1/models", rest)
    wait_port(ports["grpcPort"], grpc)
    return ports, [rest, grpc]
