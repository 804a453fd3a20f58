"""The loader inside real processes: SIGTERM mid-load, and llmariner's standalone "upload to a bucket" recipe."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.e2e.conftest import Proc, embedded_config, start, wait_loaded
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread
from tests.helpers import hf_prefix


def _get(proc: Proc, path: str) -> Any:
    with urllib.request.urlopen(proc.base_url + path, timeout=10) as r:
        return json.loads(r.read())


def _done(proc: Proc, model_id: str) -> int:
    """The bytes of `model_id` stored so far, as its loader last reported."""
    progress = _get(proc, f"/v1/models/{model_id}?include_loading_model=true").get("loading_progress") or {}
    return int(progress.get("bytes_done", 0))


def _post(proc: Proc, path: str, body: Any) -> Any:
    req = urllib.request.Request(proc.base_url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _loader_config(server: Proc, object_store: dict[str, Any]) -> dict[str, Any]:
    """A loader role that talks to `server`'s worker API, polling and reporting progress often."""
    return {
        "objectStore": object_store,
        "loader": {
            "workerServiceAddr": f"127.0.0.1:{server.worker}",
            "modelLoadInterval": "200ms",
            "progressInterval": "300ms",
        },
    }


def test_sigterm_mid_load_gives_the_model_back_and_the_next_loader_continues_it(tmp_path: Path) -> None:
    hub = Hub()
    weights = bytes(range(256)) * (4096 * 8)  # 8 MiB, served slowly
    repo = hub.add("org/big", {"config.json": b"{}", "model.safetensors": weights}, throttle=0.02)
    with serve_in_thread(hub.app()) as hub_url:
        proc = start(embedded_config(tmp_path, loader=True), tmp_path, env={"HF_ENDPOINT": hub_url})
        _post(proc, "/v1/models", {"id": "org/big", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"})
        deadline = time.monotonic() + 20
        # Past the first 4 MiB block: the store has bytes of the weights.
        while _done(proc, "org/big") < 5 * 1024 * 1024:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.05)
        t0 = time.monotonic()
        assert proc.stop(signal.SIGTERM) == 0, proc.output()
        assert time.monotonic() - t0 < 10
        assert "giving org/big back" in proc.output()
        with sqlite3.connect(tmp_path / "db" / "mm.db") as db:
            status, message = db.execute(
                "SELECT loading_status, loading_status_message FROM base_models WHERE model_id = 'org/big'"
            ).fetchone()
        assert status == 1 and "stopped; waiting for a loader" in message  # REQUESTED, not FAILED
        # What it stored stays: config.json whole, the weights' first bytes in a temporary file nobody reads.
        objects = tmp_path / "objects"
        directory = objects / hf_prefix("org/big")
        assert (directory / "config.json").read_bytes() == b"{}"
        (partial,) = directory.glob(".model.safetensors.*.part")
        kept = partial.stat().st_size
        assert 0 < kept < len(weights) and partial.read_bytes() == weights[:kept]
        served = repo.served

        # Restarted, the model is still there, REQUESTED, and the next loader continues from what was stored.
        hub.repos["org/big"].throttle = 0
        proc = start(embedded_config(tmp_path, loader=True), tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            deadline = time.monotonic() + 30
            while True:
                models = _get(proc, "/v1/models")["data"]
                if models:
                    break
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.1)
            assert models[0]["id"] == "org-big"
            assert (directory / "model.safetensors").read_bytes() == weights
            assert repo.served - served == len(weights) - kept  # only the rest, asked for with a Range request
            assert not list(directory.glob(".*.part"))
        finally:
            proc.stop()


def test_upstream_standalone_loader_uploads_to_a_bucket_and_exits(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    """llmariner's README recipe: `--role loader`, debug.standalone, runOnce, baseModels; no server needed."""
    hub = Hub()
    files = {"config.json": b'{"a": 1}', "model.safetensors": b"w" * 100_000}
    hub.add("google/gemma-2b-it", files)
    config = {
        "objectStore": {
            "s3": {
                "endpointUrl": s3_endpoint,
                "region": "us-east-1",
                "bucket": s3_bucket,
                "pathPrefix": "models",
                "baseModelPathPrefix": "base-models",
            }
        },
        "baseModels": ["google/gemma-2b-it"],
        "runOnce": True,
        "downloader": {"kind": "huggingFace", "huggingFace": {"cacheDir": str(tmp_path / "hf-cache")}},
        "debug": {"standalone": True, "sqlitePath": str(tmp_path / "loader.db")},
        "componentStatusSender": {"enable": False},
    }
    path = tmp_path / "loader.yaml"
    path.write_text(yaml.safe_dump(config))
    with serve_in_thread(hub.app()) as hub_url:
        r = subprocess.run(
            [sys.executable, "-m", "model_manager", "run", "--config", str(path), "--role", "loader"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "HF_ENDPOINT": hub_url},
        )
    assert r.returncode == 0, r.stderr
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for name, data in files.items():
        key = f"{hf_prefix('google/gemma-2b-it')}/{name}"
        assert s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
    listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert len(listed) == len(files)  # the Hugging Face cache's own files were not uploaded
    assert any((tmp_path / "hf-cache").rglob("model.safetensors"))  # and the cache was used


class Unfinished:
    """What a killed writer leaves in each store: open multipart uploads (S3), `.part` files (a local directory)."""

    def __init__(self, backend: str, tmp: Path, s3_endpoint: str, s3_bucket: str) -> None:
        self.backend = backend
        self.root = tmp / "objects"
        self.s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        self.bucket = s3_bucket
        if backend == "s3":
            self.config: dict[str, Any] = {
                "s3": {"endpointUrl": s3_endpoint, "region": "us-east-1", "bucket": s3_bucket, "partSizeMiB": 5}
            }
        else:
            self.config = {"local": {"path": str(self.root)}}

    def left(self) -> list[str]:
        if self.backend == "s3":
            return [u["Key"] for u in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]
        return [str(p) for p in self.root.rglob("*.part")]

    def read(self, key: str) -> bytes:
        if self.backend == "s3":
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
        return (self.root / key).read_bytes()


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_kill_9_of_a_loader_mid_transfer_leaves_nothing_after_the_next_load(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, backend: str
) -> None:
    """A loader killed mid-write: after its lease, another finishes byte-exact and nothing unfinished stays, on
    either store. (A stale loader that comes back is refused: tests/integration/test_loading_status.py.)"""
    hub = Hub()
    weights = bytes(range(256)) * (4096 * 24)  # 24 MiB: several 5 MiB parts, served slowly
    hub.add("org/big", {"config.json": b"{}", "model.safetensors": weights}, throttle=0.02)
    store = Unfinished(backend, tmp_path, s3_endpoint, s3_bucket)
    with serve_in_thread(hub.app()) as hub_url:
        server_cfg = {
            **embedded_config(tmp_path),
            "objectStore": store.config,
            "loading": {"leaseDuration": "3s", "maxAttempts": 5},
        }
        server = start(server_cfg, tmp_path, role="server")
        loader_cfg = _loader_config(server, store.config)
        env = {"HF_ENDPOINT": hub_url}
        try:
            first = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            _post(server, "/v1/models", {"id": "org/big", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"})
            deadline = time.monotonic() + 30
            while not store.left():
                assert time.monotonic() < deadline, first.output()
                time.sleep(0.05)
            first.popen.send_signal(signal.SIGKILL)
            first.popen.wait(10)
            assert store.left()  # what it left unfinished

            hub.repos["org/big"].throttle = 0
            second = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            model = wait_loaded(server, "org-big", second)
            assert model["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
            assert store.read(f"{hf_prefix('org/big')}/model.safetensors") == weights
            assert store.left() == []
            assert second.stop() == 0, second.output()
        finally:
            server.stop()


def test_a_frozen_loader_that_comes_back_after_another_finished_is_refused_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    hub = Hub()
    weights = bytes(range(256)) * (4096 * 8)  # 8 MiB, served slowly
    files = {"config.json": b"{}", "model.safetensors": weights}
    hub.add("org/big", files, throttle=0.02)
    with serve_in_thread(hub.app()) as hub_url:
        server_cfg = {**embedded_config(tmp_path), "loading": {"leaseDuration": "4s"}}  # margin on a busy machine
        server = start(server_cfg, tmp_path, role="server")
        loader_cfg = _loader_config(server, {"local": {"path": str(tmp_path / "objects")}})
        env = {"HF_ENDPOINT": hub_url}
        loaders: list[Proc] = []
        try:
            first = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            loaders.append(first)
            _post(server, "/v1/models", {"id": "org/big", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"})
            deadline = time.monotonic() + 30
            while (
                "downloaded"
                not in _get(server, "/v1/models/org/big?include_loading_model=true")["loading_status_message"]
            ):
                assert time.monotonic() < deadline, first.output()
                time.sleep(0.05)
            first.popen.send_signal(signal.SIGSTOP)  # frozen mid-transfer: its lease runs out
            hub.repos["org/big"].throttle = 0
            second = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            loaders.append(second)
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert _get(server, "/v1/models/org-big")["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
                    break
                except urllib.error.HTTPError:
                    assert time.monotonic() < deadline, second.output()
                    time.sleep(0.2)
            first.popen.send_signal(signal.SIGCONT)  # back, with a claim that is no longer its own
            time.sleep(3)
            stored = tmp_path / "objects" / hf_prefix("org/big")
            assert stored.is_dir(), first.output()[-6000:]
            assert {p.name: p.read_bytes() for p in stored.iterdir()} == files  # nothing deleted or overwritten
            assert _get(server, "/v1/models/org-big")["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
            assert first.popen.poll() is None, first.output()
            for loader in (first, second):
                assert loader.stop() == 0, loader.output()[-3000:]
        finally:
            for loader in loaders:  # a failed assertion must not leave a loader (maybe a stopped one) running
                if loader.popen.poll() is None:
                    loader.popen.kill()
            server.stop()
