"""Watching a load without polling, through the real entry points: `model-manager models create --wait` (plain lines
when piped, a bar redrawn in place on a terminal) and the gRPC stream, on one server while the loader reports to
another; and a server that shuts down ends its streams at once, with a status that says to watch again."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel

from model_manager.proto.llmariner.models.server import v1 as pb
from tests.e2e.conftest import embedded_config, start
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread

FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 16384}  # 4 MiB
PROGRESS = re.compile(r"^org/model: loading ([\d.]+) MiB of 4\.0 MiB \((\d+)%\)(, [\d.]+ [KM]iB/s)?.*, \d/2 files$")


def _cli(url: str, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODEL_MANAGER_URL": url, "COLUMNS": "120"}
    command = [sys.executable, "-m", "model_manager", "models", *args]
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, env=env)


async def _grpc_watch(port: int, model_id: str) -> list[pb.Model]:
    async with Channel("127.0.0.1", port) as channel:
        stub = pb.ModelsServiceStub(channel)
        return [m async for m in stub.watch_model(pb.WatchModelRequest(id=model_id))]


def _exists(url: str, model_id: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/v1/models/{model_id}?include_loading_model=true", timeout=5).close()
            return
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline, f"{model_id} was not created"
            time.sleep(0.05)


@pytest.mark.slow
def test_a_watcher_on_one_server_follows_a_load_reported_to_another(
    tmp_path: Path, fresh_database: dict[str, Any]
) -> None:
    hub = Hub()
    hub.add("org/model", FILES, throttle=0.05)  # 64 chunks: about 3 s
    shared = {"database": fresh_database, "objectStore": {"local": {"path": str(tmp_path / "objects")}}}
    with serve_in_thread(hub.app()) as hub_url:
        watched = start({**shared, "loader": {"enable": False}}, tmp_path, role="server")
        reported = start({**shared, "loader": {"enable": False}}, tmp_path, role="server")
        loader_config = {
            "objectStore": shared["objectStore"],
            "loader": {
                "workerServiceAddr": f"127.0.0.1:{reported.worker}",
                "modelLoadInterval": "200ms",
                "progressInterval": "300ms",
            },
        }
        loader = start(loader_config, tmp_path, role="loader", wait_http=False, env={"HF_ENDPOINT": hub_url})
        try:
            cli = _cli(watched.base_url, "create", "base", "org/model", "--source-repository", "hugging-face", "--wait")
            _exists(watched.base_url, "org/model")  # then watch it over gRPC as well, on the same server
            streamed = asyncio.run(_grpc_watch(watched.grpc, "org/model"))
            out, err = cli.communicate(timeout=60)
            assert cli.returncode == 0, err.decode()
            lines = out.decode().splitlines()
            progress = [m for m in map(PROGRESS.match, lines) if m]
            assert len(progress) >= 3, lines  # numbers the loader sent to the other server
            percents = [int(m[2]) for m in progress]
            assert percents == sorted(percents) and percents[-1] > percents[0]
            assert any(m[3] for m in progress), "no rate shown"
            assert re.fullmatch(r"org-model: loaded, 4\.0 MiB in 2 files after \d+ s", lines[-1])
            assert any(m.loading_progress and m.loading_progress.bytes_done > 0 for m in streamed)
            assert (streamed[-1].id, streamed[-1].loading_status) == ("org-model", pb.ModelLoadingStatus.SUCCEEDED)

            # On a terminal: one line redrawn in place, with a bar.
            hub.add("org/other", FILES, throttle=0.05)
            primary, secondary = pty.openpty()
            tty = _cli(
                watched.base_url,
                "create",
                "base",
                "org/other",
                "--source-repository",
                "hugging-face",
                "--wait",
                stdout=secondary,
            )
            os.close(secondary)
            screen = b""
            while True:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the CLI exited and closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            os.close(primary)
            assert tty.wait(30) == 0, tty.stderr.read().decode() if tty.stderr else ""
            text = screen.decode()
            assert re.search(r"\r\x1b\[K +\d+% ▕█*\s*▏ [\d.]+ MiB/4\.0 MiB", text), text
            assert "\r\x1b[Korg-other: loaded, 4.0 MiB in 2 files" in text
        finally:
            for proc in (loader, watched, reported):
                proc.stop()


def test_a_server_shutting_down_ends_its_watch_streams_at_once(tmp_path: Path) -> None:
    proc = start(embedded_config(tmp_path), tmp_path)
    try:
        body = json.dumps({"id": "gemma:2b", "source_repository": "SOURCE_REPOSITORY_OLLAMA"}).encode()
        urllib.request.urlopen(urllib.request.Request(proc.base_url + "/v1/models", data=body), timeout=10).close()
        stream = urllib.request.urlopen(proc.base_url + "/v1/models/gemma:2b:watch", timeout=30)
        assert json.loads(stream.readline())["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
        started = time.monotonic()
        assert proc.stop() == 0
        last = json.loads(stream.readline())
        assert last["code"] == 14 and "watch again" in last["message"]
        assert stream.readline() == b""
        assert time.monotonic() - started < 5  # not held until the drain timeout
    finally:
        proc.stop()
