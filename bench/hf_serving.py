"""Serving a stored model over the Hugging Face protocol: a file of `size_mib` in moto's S3 server, loaded there by
the server's own loader, then (a) downloaded through `/hf` with huggingface_hub's hf_hub_download, streamed by the
server, against (b) the same object read straight from the store with boto3; both write the file to disk, each in
its own process, alternating. huggingface_hub's own client (httpx2) spends about three times boto3's CPU on the
same bytes, so two more points separate the client's cost from the server's: (c) the same /hf URL read by a plain
HTTP client (urllib, as boto3 reads), and (d) hf_hub_download from a second server with `http.hfRedirect`, which
sends the client to the bucket (a presigned URL): the same client, no server in the byte path. Plus the server's
RSS while 8 clients download the file at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import yaml

from bench.common import Process, Report, alternate, free_port, median, wait_http, wait_port, yes

MiB = 1024 * 1024
REPO = "bench/served-model"
FILE = "model.safetensors"


def _make_model(root: Path, size_mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    with (root / FILE).open("wb") as f:
        for _ in range(size_mib // 64):
            f.write(os.urandom(64 * MiB))
        f.write(os.urandom((size_mib % 64) * MiB))


def _rss(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def _timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"})
    return time.perf_counter() - t0


def run(report: Report, tmp: Path, size_mib: int = 1024, rounds: int = 5, clients: int = 8) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    s3_port, hub_port, http_port = free_port(), free_port(), free_port()
    s3_url, hub_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{hub_port}"
    model = tmp / "served-model"
    _make_model(model, size_mib)
    moto = Process(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(s3_port)], tmp / "moto.log"
    )
    hub = Process([sys.executable, "-m", "bench.hub_server", str(hub_port), REPO, str(model)], tmp / "hub.log")
    server: Process | None = None
    try:
        wait_port(s3_port, moto)
        wait_http(f"{hub_url}/api/models/{REPO}", hub)
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        s3.create_bucket(Bucket="served")
        cfg = {
            "httpPort": http_port,
            "grpcPort": free_port(),
            "workerServiceGrpcPort": free_port(),
            "debug": {"sqlitePath": str(tmp / "served.db")},
            "objectStore": {"s3": {"endpointUrl": s3_url, "region": "us-east-1", "bucket": "served"}},
            "loader": {"enable": True, "modelLoadInterval": "200ms"},
            "logging": {"requests": False},
        }
        (tmp / "served.yaml").write_text(yaml.safe_dump(cfg))
        server = Process(
            [sys.executable, "-m", "model_manager", "run", "--config", str(tmp / "served.yaml")],
            tmp / "served.log",
            env={"HF_ENDPOINT": hub_url},
        )
        api = f"http://127.0.0.1:{http_port}"
        wait_http(f"{api}/readyz", server)
        body = json.dumps({"id": REPO, "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{api}/v1/models", data=body), timeout=30).close()
        _wait_loaded(f"{api}/v1/models/{REPO.replace('/', '-')}", server)
        key = next(o["Key"] for o in s3.list_objects_v2(Bucket="served")["Contents"] if o["Key"].endswith(FILE))
        endpoint = f"{api}/hf"
        out = tmp / "downloads"

        def ours() -> float:
            shutil.rmtree(out, ignore_errors=True)
            return _timed([sys.executable, "-m", "bench.hf_sides", "hf", endpoint, REPO, FILE, str(out)])

        def straight() -> float:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            return _timed([sys.executable, "-m", "bench.hf_sides", "boto3", s3_url, "served", key, str(out / FILE)])

        def plain() -> float:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            url = f"{endpoint}/{REPO}/resolve/main/{FILE}"
            return _timed([sys.executable, "-m", "bench.hf_sides", "http", url, str(out / FILE)])

        redirecting = _redirecting_server(tmp, cfg)
        try:
            redirect_endpoint = f"http://127.0.0.1:{redirecting[1]}/hf"

            def redirected() -> float:
                shutil.rmtree(out, ignore_errors=True)
                return _timed([sys.executable, "-m", "bench.hf_sides", "hf", redirect_endpoint, REPO, FILE, str(out)])

            variants = {"ours": ours, "straight": straight, "plain": plain, "redirected": redirected}
            results = alternate(rounds, variants)
        finally:
            redirecting[0].stop()
        shutil.rmtree(out, ignore_errors=True)
        a, b, c = median(results["ours"]), median(results["straight"]), median(results["plain"])
        d = median(results["redirected"])
        label = f"/hf download {size_mib / 1024:g} GiB" if size_mib >= 1024 else f"/hf download {size_mib} MiB"
        report.add(
            label,
            "hf_hub_download via /hf vs boto3 from the store (throughput)",
            f"{size_mib / a:.0f} MiB/s",
            f"{size_mib / b:.0f} MiB/s",
            f"{b / a:.2f}x",
            ">= 0.8x",
            yes(b / a >= 0.8),
        )
        report.add(
            label,
            "(c) the same /hf URL read by urllib vs boto3 from the store (throughput)",
            f"{size_mib / c:.0f} MiB/s",
            f"{size_mib / b:.0f} MiB/s",
            f"{b / c:.2f}x",
            "",
            "",
        )
        report.add(
            label,
            "(d) hf_hub_download redirected to the bucket vs boto3 from the store (throughput)",
            f"{size_mib / d:.0f} MiB/s",
            f"{size_mib / b:.0f} MiB/s",
            f"{b / d:.2f}x",
            "",
            "",
        )
        _concurrent(report, server, endpoint, tmp, clients, size_mib)
    finally:
        for p in (server, hub, moto):
            if p is not None:
                p.stop()
        shutil.rmtree(model, ignore_errors=True)


def _redirecting_server(tmp: Path, cfg: dict[str, object]) -> tuple[Process, int]:
    """A second server over the same database and bucket, answering downloads with presigned URLs."""
    port = free_port()
    other = {
        **cfg,
        "httpPort": port,
        "grpcPort": free_port(),
        "workerServiceGrpcPort": free_port(),
        "loader": {"enable": False},
        "http": {"hfRedirect": True},
    }
    (tmp / "redirecting.yaml").write_text(yaml.safe_dump(other))
    proc = Process(
        [sys.executable, "-m", "model_manager", "run", "--config", str(tmp / "redirecting.yaml")],
        tmp / "redirecting.log",
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, port


def _wait_loaded(url: str, server: Process, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if json.load(r).get("loading_status") == "MODEL_LOADING_STATUS_SUCCEEDED":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the model was not loaded in {timeout}s:\n{server.output()[-3000:]}")


def _concurrent(report: Report, server: Process, endpoint: str, tmp: Path, clients: int, size_mib: int) -> None:
    """The server's RSS before and at its highest while `clients` download the file at once."""
    pid = server.popen.pid
    idle = _rss(pid)
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    args = [sys.executable, "-m", "bench.hf_sides", "hf", endpoint, REPO, FILE]
    procs = [subprocess.Popen([*args, str(tmp / f"client-{i}")], env=env) for i in range(clients)]
    peak = idle
    while any(p.poll() is None for p in procs):
        peak = max(peak, _rss(pid))
        time.sleep(0.05)
    for i, p in enumerate(procs):
        shutil.rmtree(tmp / f"client-{i}", ignore_errors=True)
        if p.returncode != 0:
            raise RuntimeError(f"client {i} failed")
    grew = (peak - idle) / MiB
    report.add(
        f"/hf download, {clients} clients at once",
        f"server RSS, idle -> peak ({clients} x {size_mib} MiB streamed)",
        f"{peak / MiB:.0f} MiB",
        f"{idle / MiB:.0f} MiB",
        f"+{grew:.0f} MiB",
        "flat (< +64 MiB)",
        yes(grew < 64),
    )
