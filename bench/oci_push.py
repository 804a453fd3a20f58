"""Pushing a stored model to an OCI registry: a model with a file of `size_mib`, loaded by the server's own loader
into a local-directory store, pushed by the server to a stock registry (Debian's docker-registry) over REST, against
oras (the Python client) pushing the same files from disk to the same registry; each in its own process, alternating.
Before each push the registry forgets the blobs of the repository pushed to, so both send every byte. Plus the
server's RSS at its highest while it pushes, against its RSS before."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.common import Process, Report, alternate, free_port, median, wait_http, yes
from bench.hf_serving import _make_model, _rss, _wait_loaded
from tests.fakes.oci_registry import run_registry

MiB = 1024 * 1024
REPO = "bench/pushed-model"
LOADED = REPO.replace("/", "-")


def _forget(registry: str, repository: str, digests: list[str]) -> None:
    """Unlink the blobs from the repository, so that the next push to it sends them again."""
    for digest in digests:
        request = urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/{digest}", method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise


def _call(url: str, body: object | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
        return json.load(r)  # type: ignore[no-any-return]


def run(report: Report, tmp: Path, size_mib: int = 1024, rounds: int = 5) -> None:
    model = tmp / "pushed-model"
    _make_model(model, size_mib)
    http_port, hub_port = free_port(), free_port()
    hub = Process([sys.executable, "-m", "bench.hub_server", str(hub_port), REPO, str(model)], tmp / "hub.log")
    server: Process | None = None
    with run_registry(tmp / "registry") as registry:
        try:
            wait_http(f"http://127.0.0.1:{hub_port}/api/models/{REPO}", hub)
            cfg = {
                "httpPort": http_port,
                "grpcPort": free_port(),
                "workerServiceGrpcPort": free_port(),
                "debug": {"sqlitePath": str(tmp / "push.db")},
                "objectStore": {"local": {"path": str(tmp / "push-objects")}},
                "loader": {"enable": True, "modelLoadInterval": "200ms"},
                "logging": {"requests": False},
                "oci": {"insecureRegistries": [registry.host]},
            }
            (tmp / "push.yaml").write_text(yaml.safe_dump(cfg))
            server = Process(
                [sys.executable, "-m", "model_manager", "run", "--config", str(tmp / "push.yaml")],
                tmp / "push.log",
                env={"HF_ENDPOINT": f"http://127.0.0.1:{hub_port}"},
            )
            api = f"http://127.0.0.1:{http_port}"
            wait_http(f"{api}/readyz", server)
            _call(f"{api}/v1/models", {"id": REPO, "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"})
            _wait_loaded(f"{api}/v1/models/{LOADED}", server)
            stored = _call(f"{api}/v1/models/{LOADED}")
            digests = [f"sha256:{f['sha256']}" for f in stored["files"]]
            pid, peak = server.popen.pid, [0]
            idle = _rss(pid)

            def ours() -> float:
                _forget(registry.host, "bench/ours", digests)
                t0 = time.perf_counter()
                destination = {"destination": f"oci://{registry.host}/bench/ours:v1"}
                push = _call(f"{api}/v1/models/{LOADED}:push", destination)
                while push["status"] == "PUSH_STATUS_PUSHING":
                    peak[0] = max(peak[0], _rss(pid))
                    time.sleep(0.02)
                    push = _call(f"{api}/v1/model_pushes/{push['id']}")
                took = time.perf_counter() - t0
                if push["status"] != "PUSH_STATUS_SUCCEEDED" or int(str(push["bytes_skipped"])):
                    raise RuntimeError(f"the push did not send every byte: {push}\n{server.output()[-2000:]}")
                return took

            def oras() -> float:
                _forget(registry.host, "bench/oras", digests)
                done = subprocess.run(
                    [sys.executable, "-c", _ORAS, f"{registry.host}/bench/oras:v1", *[str(p) for p in model.iterdir()]],
                    check=True,
                    capture_output=True,
                    cwd=model,
                    text=True,
                )
                return float(done.stdout.split()[-1])  # the push alone, without the interpreter's start

            results = alternate(rounds, {"ours": ours, "oras": oras})
        finally:
            for p in (server, hub):
                if p is not None:
                    p.stop()
    a, b = median(results["ours"]), median(results["oras"])
    label = f"OCI push {size_mib / 1024:g} GiB" if size_mib >= 1024 else f"OCI push {size_mib} MiB"
    report.add(
        label,
        "model-manager push (store -> registry) vs oras-py push from disk (throughput)",
        f"{size_mib / a:.0f} MiB/s",
        f"{size_mib / b:.0f} MiB/s",
        f"{b / a:.2f}x",
        ">= 0.8x",
        yes(b / a >= 0.8),
    )
    grew = (peak[0] - idle) / MiB
    report.add(
        label,
        "server RSS while pushing, idle -> peak",
        f"{peak[0] / MiB:.0f} MiB",
        f"{idle / MiB:.0f} MiB",
        f"+{grew:.0f} MiB",
        "flat (< +64 MiB)",
        yes(grew < 64),
    )


# oras-py's push of the files named on the command line (their names as titles), plain HTTP; prints its seconds.
_ORAS = """
import sys, time, oras.provider
client = oras.provider.Registry(insecure=True)
t0 = time.perf_counter()
client.push(target=sys.argv[1], files=[p.rsplit("/", 1)[-1] for p in sys.argv[2:]])
print(time.perf_counter() - t0)
"""
