"""The loader's own ceiling: a source and a sink that cost next to nothing, so what is measured is the loader.

The hub stand-in serves the model from tmpfs (memory, sent with sendfile); the loader writes into a local-directory
store on tmpfs and verifies every file's sha256 on the way. Its throughput is the model's size over the run's wall
time minus that of the same run with nothing to load (process start and shutdown). The peer is huggingface_hub's
`snapshot_download` writing the same files into a directory on the same tmpfs (it checks no sha256), measured
alternately in the same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import Process, Report, alternate, free_port, median, wait_http, yes
from bench.transfer import REPO, _make_model, _timed

MiB = 1024 * 1024


def _memory_dir() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="mm-ceiling-", dir=shm if shm.is_dir() else None))


def _loader_run(root: Path, hub_url: str, models: list[str]) -> tuple[float, int]:
    shutil.rmtree(root / "objects", ignore_errors=True)
    (root / "loader.db").unlink(missing_ok=True)
    cfg = {
        "objectStore": {"local": {"path": str(root / "objects")}},
        "baseModels": models,
        "runOnce": True,
        "debug": {"standalone": True, "sqlitePath": str(root / "loader.db")},
    }
    path = root / "loader.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = [sys.executable, "-m", "model_manager", "run", "--config", str(path), "--role", "loader"]
    try:
        return _timed(args, env={"HF_ENDPOINT": hub_url}, cwd=root)
    finally:
        shutil.rmtree(root / "objects", ignore_errors=True)


def _snapshot(root: Path, hub_url: str) -> float:
    out = root / "snapshot"
    shutil.rmtree(out, ignore_errors=True)
    code = f"from huggingface_hub import snapshot_download; snapshot_download({REPO!r}, local_dir={str(out)!r})"
    try:
        return _timed([sys.executable, "-c", code], env={"HF_ENDPOINT": hub_url})[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(report: Report, tmp: Path, size_mib: int = 2048, rounds: int = 3) -> None:
    root = _memory_dir()
    hub: Process | None = None
    try:
        _make_model(root / "model", size_mib)
        port = free_port()
        hub = Process([sys.executable, "-m", "bench.hub_server", str(port), REPO, str(root / "model")], tmp / "h.log")
        hub_url = f"http://127.0.0.1:{port}"
        wait_http(f"{hub_url}/api/models/{REPO}", hub)
        peaks: list[int] = []

        def ours() -> float:
            elapsed, peak = _loader_run(root, hub_url, [REPO])
            peaks.append(peak)
            return elapsed

        runs = alternate(
            rounds,
            {
                "ours": ours,
                "idle": lambda: _loader_run(root, hub_url, [])[0],
                "peer": lambda: _snapshot(root, hub_url),
            },
        )
        a, idle, b = (median(runs[k]) for k in ("ours", "idle", "peer"))
        label = f"loader ceiling, {size_mib / 1024:g} GiB, hub on tmpfs -> local store on tmpfs"
        rate = size_mib / max(a - idle, 1e-6)
        report.add(
            label, "MiB/s, sha256 verified (start-up excluded)", f"{rate:.0f}", "", "", ">= 500", yes(rate >= 500)
        )
        report.add(
            label,
            "wall time vs snapshot_download to tmpfs",
            f"{a:.1f} s",
            f"{b:.1f} s",
            f"{a / b:.2f}x",
            "< 1x",
            yes(a < b),
        )
        report.notes.append(
            f"loader ceiling: peak RSS {max(peaks) / MiB:.0f} MiB; start-up and shutdown alone {idle:.1f} s; "
            f"snapshot_download {size_mib / b:.0f} MiB/s wall, the loader {size_mib / a:.0f} MiB/s wall"
        )
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(root, ignore_errors=True)
