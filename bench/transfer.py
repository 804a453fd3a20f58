"""Loader transfer: a model in Hugging Face layout (config.json and two safetensors shards of random bytes) from the
hub stand-in into moto's S3 server. (a) our loader, (b) the sequential way (snapshot_download to disk, then boto3
upload_file), (c) the limit: the larger of download-only and upload-only time for the same bytes. Plus the loader
process's peak RSS for two model sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import yaml

from bench.common import ROOT, Process, Report, alternate, free_port, median, wait_http, wait_port, yes

MiB = 1024 * 1024
REPO = "bench/big-model"


def _make_model(root: Path, total_mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "llama", "hidden_size": 4096}')
    shard = total_mib // 2
    for i in (1, 2):
        with (root / f"model-0000{i}-of-00002.safetensors").open("wb") as f:
            for _ in range(shard // 64):
                f.write(os.urandom(64 * MiB))
            if shard % 64:
                f.write(os.urandom((shard % 64) * MiB))


def _timed(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    The peak is the child's own high-water mark (VmHWM), sampled while it runs: rusage's ru_maxrss would also
    count the pages the child shared with this (large) benchmark process between fork and exec."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    status, cmdline = Path(f"/proc/{proc.pid}/status"), Path(f"/proc/{proc.pid}/cmdline")
    ours = [a.encode() for a in args]
    while proc.poll() is None:
        time.sleep(0.02)
        try:
            if cmdline.read_bytes().split(b"\0")[: len(ours)] != ours:
                continue  # still this process's copy, before exec
            hwm = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
            peak = max(peak, int(hwm.split()[1]) * 1024)
        except (OSError, StopIteration, ValueError):
            pass  # exiting, or not yet exec'd
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, peak


def _empty_bucket(s3_url: str, bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def _loader(
    tmp: Path, hub_url: str, s3_url: str, bucket: str, models: tuple[str, ...] = (REPO,), **s3: int
) -> tuple[float, int]:
    """One run of `model-manager run --role loader` (standalone, runOnce): wall seconds and peak RSS. With no
    models, the process's idle footprint."""
    db = tmp / "loader.db"
    db.unlink(missing_ok=True)
    cfg = {
        "objectStore": {
            "s3": {
                "endpointUrl": s3_url,
                "region": "us-east-1",
                "bucket": bucket,
                "pathPrefix": "models",
                "baseModelPathPrefix": "base-models",
                **s3,
            }
        },
        "baseModels": list(models),
        "runOnce": True,
        "debug": {"standalone": True, "sqlitePath": str(db)},
    }
    path = tmp / "loader.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return _timed(
        [sys.executable, "-m", "model_manager", "run", "--config", str(path), "--role", "loader"],
        env={"HF_ENDPOINT": hub_url},
        cwd=tmp,
    )


def run(report: Report, tmp: Path, sizes_mib: tuple[int, ...] = (2048, 4096), rounds: int = 3) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    s3_port = free_port()
    moto = Process(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(s3_port)], tmp / "moto.log"
    )
    s3_url = f"http://127.0.0.1:{s3_port}"
    try:
        wait_port(s3_port, moto)
        bucket = "bench"
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1").create_bucket(Bucket=bucket)
        rss: dict[int, int] = {}
        idle = _loader(tmp, "http://127.0.0.1:9", s3_url, bucket, models=())[1]
        for n, size in enumerate(sizes_mib):
            model_dir = tmp / f"model-{size}"
            _make_model(model_dir, size)
            hub_port = free_port()
            hub = Process(
                [sys.executable, "-m", "bench.hub_server", str(hub_port), REPO, str(model_dir)], tmp / "hub.log"
            )
            hub_url = f"http://127.0.0.1:{hub_port}"
            try:
                wait_http(f"{hub_url}/api/models/{REPO}", hub)
                if n == 0:
                    _compare(report, tmp, size, hub_url, s3_url, bucket, model_dir, rounds, rss)
                    _empty_bucket(s3_url, bucket)
                    peak = _loader(tmp, hub_url, s3_url, bucket, partSizeMiB=16, partsInFlight=8)[1]
                    _memory_row(
                        report, f"loader, {size / 1024:g} GiB, partSizeMiB 16 x partsInFlight 8", peak, idle, 16 * 8
                    )
                else:
                    _empty_bucket(s3_url, bucket)
                    rss[size] = _loader(tmp, hub_url, s3_url, bucket)[1]
            finally:
                hub.stop()
                shutil.rmtree(model_dir, ignore_errors=True)
                _empty_bucket(s3_url, bucket)
        for size, peak in rss.items():
            _memory_row(report, f"loader, {size / 1024:g} GiB, defaults (64 MiB x 4)", peak, idle, 64 * 4)
        if len(rss) == 2:
            small, large = rss.values()
            report.add(
                "loader",
                "peak RSS, larger / smaller model",
                "",
                "",
                f"{large / small:.2f}x",
                "within 10%",
                yes(abs(large / small - 1) <= 0.10),
            )
    finally:
        moto.stop()


def _memory_row(report: Report, label: str, peak: int, idle: int, budget_mib: int) -> None:
    """Peak RSS against the process's idle RSS plus its part budget (partsInFlight x partSize)."""
    over = (peak - idle) / (budget_mib * MiB)
    report.add(
        label,
        "peak RSS (idle + part budget)",
        f"{peak / MiB:.0f} MiB",
        f"{idle / MiB:.0f} + {budget_mib} MiB",
        f"{over:.2f}x budget",
        "<= 1.25x",
        yes(over <= 1.25),
    )


def _compare(
    report: Report,
    tmp: Path,
    size: int,
    hub_url: str,
    s3_url: str,
    bucket: str,
    model_dir: Path,
    rounds: int,
    rss: dict[int, int],
) -> None:
    def ours() -> float:
        _empty_bucket(s3_url, bucket)
        elapsed, peak = _loader(tmp, hub_url, s3_url, bucket)
        rss[size] = max(rss.get(size, 0), peak)
        return elapsed

    def sequential() -> float:
        _empty_bucket(s3_url, bucket)
        out = tmp / "snapshot"
        shutil.rmtree(out, ignore_errors=True)
        try:
            return _timed(
                [sys.executable, "-m", "bench.transfer_sides", "sequential", hub_url, REPO, bucket, s3_url, str(out)]
            )[0]
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def limit() -> float:
        _empty_bucket(s3_url, bucket)
        down = _timed([sys.executable, "-m", "bench.transfer_sides", "download", hub_url, REPO])[0]
        up = _timed([sys.executable, "-m", "bench.transfer_sides", "upload", s3_url, bucket, str(model_dir)])[0]
        return max(down, up)

    results = alternate(rounds, {"a": ours, "b": sequential, "c": limit})
    a, b, c = (median(results[k]) for k in ("a", "b", "c"))
    gib = size / 1024
    report.add(
        f"transfer {gib:g} GiB",
        "(a) loader vs (c) limit",
        f"{a:.1f} s",
        f"{c:.1f} s",
        f"{a / c:.2f}x",
        "<= 1.15x",
        yes(a / c <= 1.15),
    )
    report.add(
        f"transfer {gib:g} GiB",
        "(a) loader vs (b) sequential",
        f"{a:.1f} s",
        f"{b:.1f} s",
        f"{a / b:.2f}x",
        "clearly < 1x",
        yes(a / b < 0.9),
    )
    report.notes.append(f"transfer {gib:g} GiB: loader {size / a:.0f} MiB/s; sequential {size / b:.0f} MiB/s")
