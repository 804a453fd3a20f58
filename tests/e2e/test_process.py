"""The real entry point: `model-manager run` driven by the OpenAI SDK, grpcio stubs and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Proc, embedded_config, start, wait_loaded
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread
from tests.helpers import hf_prefix


def _http(proc: Proc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        proc.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _load_through_worker_api(proc: Proc, pb: Any, model_id: str) -> None:
    """Play the loader's part over the worker gRPC port."""

    async def go() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.worker}") as ch:
            worker = pb.grpc.ModelsWorkerServiceStub(ch)
            await worker.CreateBaseModel(
                pb.pb2.CreateBaseModelRequest(
                    id=model_id, path=f"models/base-models/{model_id}", formats=[pb.pb2.MODEL_FORMAT_HUGGING_FACE]
                )
            )

    asyncio.run(go())


def test_openai_sdk_lists_retrieves_and_deletes(server: Proc, grpcio_pb: Any) -> None:
    for m in ["meta-llama-3", "google-gemma-2b"]:
        _load_through_worker_api(server, grpcio_pb, m)
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["google-gemma-2b", "meta-llama-3"]
    assert all(m.object == "model" and m.owned_by == "system" and isinstance(m.created, int) for m in listed.data)
    got = client.models.retrieve("meta-llama-3")
    assert got.id == "meta-llama-3"
    deleted = client.models.delete("meta-llama-3")
    assert (deleted.id, deleted.deleted) == ("meta-llama-3", True)
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("meta-llama-3")
    assert 'model "meta-llama-3" not found' in str(info.value)


def test_grpcio_clients_against_the_process(server: Proc, grpcio_pb: Any) -> None:
    pb2 = grpcio_pb.pb2

    async def go() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc}") as ch:
            models = grpcio_pb.grpc.ModelsServiceStub(ch)
            m = await models.CreateModel(
                pb2.CreateModelRequest(id="gemma:2b", source_repository=pb2.SOURCE_REPOSITORY_OLLAMA)
            )
            assert m.loading_status == pb2.MODEL_LOADING_STATUS_REQUESTED
            listed = await models.ListModels(pb2.ListModelsRequest(include_loading_models=True))
            assert [x.id for x in listed.data] == ["gemma:2b"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.worker}") as ch:
            claim = await grpcio_pb.grpc.ModelsWorkerServiceStub(ch).AcquireUnloadedBaseModel(
                pb2.AcquireUnloadedBaseModelRequest(holder="test")
            )
            assert (claim.base_model_id, claim.attempt) == ("gemma:2b", 1)

    asyncio.run(go())


def test_raw_http_as_the_readme_shows(server: Proc) -> None:
    status, body = _http(
        server, "POST", "/v1/models", {"id": "google/gemma-2b", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"}
    )
    assert status == 200 and body["id"] == "google/gemma-2b"
    status, body = _http(server, "GET", "/v1/models?include_loading_models=true")
    assert status == 200 and body["total_items"] == 1
    status, body = _http(server, "GET", "/v1/models/google/gemma-2b?include_loading_model=true")
    assert status == 200 and body["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
    status, body = _http(server, "POST", "/v1/models", {"id": "x", "source_repository": "NOPE"})
    assert status == 400 and body["error"]["type"] == "invalid_argument"
    status, body = _http(server, "DELETE", "/v1/models/google/gemma-2b")
    assert status == 200 and body["deleted"] is True
    assert "Traceback" not in server.output()


def test_sigterm_and_sigint_stop_cleanly(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start(embedded_config(tmp_path), tmp_path)
        t0 = time.monotonic()
        assert proc.stop(sig) == 0, proc.output()
        assert time.monotonic() - t0 < 10
        assert "stopped" in proc.output()


def test_graceful_shutdown_delay_keeps_serving(tmp_path: Path) -> None:
    proc = start({**embedded_config(tmp_path), "gracefulShutdownDelay": "1s"}, tmp_path)
    proc.popen.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    status, _ = _http(proc, "GET", "/v1/models")  # still answering during the delay
    assert status == 200
    assert proc.popen.wait(15) == 0


UPSTREAM_SERVER_CONFIG = {
    "internalGrpcPort": 0,  # replaced with a free port
    "objectStore": {"s3": {"pathPrefix": "models"}},
    "debug": {"standalone": True},
    "usageSender": {"enable": False},
}


def test_upstream_server_config_starts_the_server(tmp_path: Path) -> None:
    cfg = {**UPSTREAM_SERVER_CONFIG, "debug": {"standalone": True, "sqlitePath": str(tmp_path / "up.db")}}
    proc = start(cfg, tmp_path)
    try:
        status, _ = _http(proc, "POST", "/v1/models", {"id": "my-model", "source_repository": 1})
        assert status == 200
        assert _http(proc, "GET", "/v1/models")[0] == 200
        # Deleting a model that never loaded has no files: fine without a bucket.
        assert _http(proc, "DELETE", "/v1/models/my-model")[0] == 200
        assert "usageSender" in proc.output()  # warned about, not refused
    finally:
        assert proc.stop() == 0


def test_postgres_with_create_database_and_auto_migrate(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    cfg = {
        "database": {
            "host": url.host,
            "port": url.port or 5432,
            "username": url.username,
            "database": f"{url.database}_e2e",
            "createDatabase": True,
            "autoMigrate": True,
        },
        "objectStore": {"local": {"path": str(tmp_path / "objects")}},
    }
    proc = start(cfg, tmp_path)
    try:
        assert _http(proc, "POST", "/v1/models", {"id": "a/b", "source_repository": 2})[0] == 200
        assert _http(proc, "GET", "/v1/models?include_loading_models=true")[1]["total_items"] == 1
    finally:
        assert proc.stop() == 0
        subprocess.run(
            [
                "psql",
                "-h",
                url.host or "127.0.0.1",
                "-U",
                url.username or "postgres",
                "-d",
                "postgres",
                "-c",
                f'DROP DATABASE IF EXISTS "{url.database}_e2e" WITH (FORCE)',
            ],
            check=False,
            capture_output=True,
        )


def test_loader_role_loads_through_a_server_role(tmp_path: Path) -> None:
    """Two processes: the server owns the database; the loader talks gRPC to it and writes the store."""
    hub = Hub()
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 4096}
    hub.add("org/model", files)
    with serve_in_thread(hub.app()) as hub_url:
        server = start(embedded_config(tmp_path), tmp_path, role="server")
        try:
            loader_cfg = {
                "objectStore": {"local": {"path": str(tmp_path / "objects")}},
                "loader": {"workerServiceAddr": f"127.0.0.1:{server.worker}", "modelLoadInterval": "200ms"},
            }
            loader = start(loader_cfg, tmp_path, role="loader", wait_http=False, env={"HF_ENDPOINT": hub_url})
            status, _ = _http(server, "POST", "/v1/models", {"id": "org/model", "source_repository": 2})
            assert status == 200
            model = wait_loaded(server, "org-model", loader)
            assert model["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
            assert model["formats"] == ["MODEL_FORMAT_HUGGING_FACE"]
            stored = tmp_path / "objects" / hf_prefix("org/model")
            assert {p.name: p.read_bytes() for p in stored.iterdir()} == files
            assert loader.stop() == 0, loader.output()
            assert not (tmp_path / "data").exists()  # the loader role opened no database
        finally:
            server.stop()


def _cli(*args: str, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`model-manager ARGS` as a separate process, its output captured."""
    command = [sys.executable, "-m", "model_manager", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("httpPort: 8080\nobjectStore:\n  s3:\n    bukket: x\n")
    r = _cli("run", "--config", str(path))
    assert r.returncode == 2
    assert "objectStore.s3.bukket: unknown key" in r.stderr
    r = _cli("run", "--config", str(path.with_name("none.yaml")))
    assert r.returncode == 2 and "cannot read config file" in r.stderr
    path.write_text("{}")
    r = _cli("run", "--config", str(path), "--role", "loader")
    assert r.returncode == 2 and "loader.workerServiceAddr: required" in r.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("auth:\n  keyCacheTtl: 0s\n", "auth.keyCacheTtl: must be greater than 0"),
        # Would pass the old checks and then stop the whole process from inside the loader.
        ("loader:\n  baseModels: [org/name@]\n", "loader.baseModels[0] 'org/name@': the revision after '@' is empty"),
    ],
)
def test_refused_settings_stop_the_start_naming_the_key(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "refused.yaml"
    path.write_text(f"httpPort: {free_port()}\n{config}")
    r = _cli("run", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "serving REST" not in r.stderr


def test_migrate_command(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"debug:\n  sqlitePath: {tmp_path / 'm.db'}\n")
    r = _cli("migrate", "--config", str(path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.db").exists()


def test_listen_addresses_and_the_warning_for_unauthenticated_exposure(tmp_path: Path) -> None:
    loopback = start({**embedded_config(tmp_path), "bindAddress": "127.0.0.1"}, tmp_path)
    try:
        assert _http(loopback, "GET", "/v1/models")[0] == 200
        assert "WITHOUT authentication" not in loopback.output()
    finally:
        assert loopback.stop() == 0
    exposed = start({**embedded_config(tmp_path), "workerServiceGrpcHost": "0.0.0.0"}, tmp_path)
    try:
        assert "serving WITHOUT authentication on 0.0.0.0, every address" in exposed.output()
    finally:
        assert exposed.stop() == 0
