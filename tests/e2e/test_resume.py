"""A 1 GiB load whose loader is killed with SIGKILL at about 70%: the next loader continues from the parts of the
open multipart upload, asks the source only for the rest (Range), and the stored file is byte-exact. Bytes are
counted where they leave the hub stand-in."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import Proc, embedded_config, start, wait_loaded
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread
from tests.helpers import hf_prefix

pytestmark = pytest.mark.slow

SIZE = 1024**3
MiB = 1024 * 1024


def _get(proc: Proc, path: str) -> Any:
    with urllib.request.urlopen(proc.base_url + path, timeout=10) as r:
        return json.loads(r.read())


def _weights(path: Path) -> str:
    """1 GiB of random bytes on disk (the hub serves it from there); its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(SIZE // (64 * MiB)):
            block = os.urandom(64 * MiB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def test_a_loader_killed_at_70_percent_of_1_gib_is_continued_not_restarted(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    weights = tmp_path / "weights.safetensors"
    sha = _weights(weights)
    hub = Hub()
    repo = hub.add("org/huge", {"config.json": b"{}"}, disk={"model.safetensors": (weights, sha)}, throttle=0.01)
    store = {
        "s3": {
            "endpointUrl": s3_endpoint,
            "region": "us-east-1",
            "bucket": s3_bucket,
            "partSizeMiB": 8,
            "partsInFlight": 2,
        }
    }
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    with serve_in_thread(hub.app()) as hub_url:
        server_cfg = {**embedded_config(tmp_path), "objectStore": store, "loading": {"leaseDuration": "3s"}}
        server = start(server_cfg, tmp_path, role="server")
        loader_cfg = {
            "objectStore": store,
            "loader": {
                "workerServiceAddr": f"127.0.0.1:{server.worker}",
                "modelLoadInterval": "200ms",
                "progressInterval": "200ms",
            },
        }
        env = {"HF_ENDPOINT": hub_url}
        try:
            first = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            body = {"id": "org/huge", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"}
            req = urllib.request.Request(server.base_url + "/v1/models", data=json.dumps(body).encode(), method="POST")
            urllib.request.urlopen(req, timeout=10).close()
            deadline = time.monotonic() + 300
            done = 0
            while done < 0.7 * SIZE:
                assert time.monotonic() < deadline, first.output()[-3000:]
                progress = _get(server, "/v1/models/org/huge?include_loading_model=true").get("loading_progress")
                done = int((progress or {}).get("bytes_done", 0))
                time.sleep(0.05)
            first.popen.send_signal(signal.SIGKILL)
            first.popen.wait(10)
            before = repo.served
            assert 0.7 * SIZE <= before < 0.9 * SIZE, before

            repo.throttle = 0
            second = start(loader_cfg, tmp_path, role="loader", wait_http=False, env=env)
            model = wait_loaded(server, "org-huge", second, timeout=300)
            again = repo.served - before
            print(f"killed at {before / SIZE:.1%} sent; the next loader had {again / SIZE:.1%} sent again")
            assert again <= 0.35 * SIZE, again
            assert "resuming after" in second.output()
            assert model["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
            assert {f["path"]: f["sha256"] for f in model["files"]}["model.safetensors"] == sha
            key = f"{hf_prefix('org/huge')}/model.safetensors"
            stored = hashlib.sha256()
            for chunk in s3.get_object(Bucket=s3_bucket, Key=key)["Body"].iter_chunks(16 * MiB):
                stored.update(chunk)
            assert stored.hexdigest() == sha  # byte-exact
            assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
            assert second.stop() == 0, second.output()[-3000:]
        finally:
            server.stop()
