"""What operators watch: Prometheus metrics at /metrics, JSON log lines, request ids; all from a real process
after real traffic (REST, grpcio and a model loaded by the in-process loader)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Proc, embedded_config, start
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread

GET_MODEL = "/llmariner.models.server.v1.ModelsService/GetModel"


def _request(proc: Proc, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{proc.http}{path}", data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _samples(proc: Proc) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, headers, body = _request(proc, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, headers)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_logs_and_request_ids_after_real_traffic(tmp_path: Path, grpcio_pb: Any) -> None:
    hub = Hub()
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 4096}
    hub.add("org/model", files)
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path, loader=True), "logging": {"format": "json"}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            before = _samples(proc)
            assert _value(before, "model_manager_requests_total", api="rest", method="GET /v1/models", code="200") == 0

            status, _, _ = _request(proc, "POST", "/v1/models", {"id": "org/model", "source_repository": 2})
            assert status == 200
            deadline = time.monotonic() + 30
            while _request(proc, "GET", "/v1/models/org-model")[0] != 200:
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.1)
            assert _request(proc, "GET", "/v1/models?limit=5")[0] == 200

            # A request id: the caller's own when it sends a sane one, in the header and in the error body.
            status, headers, body = _request(proc, "GET", "/v1/models/nope", headers={"X-Request-Id": "trace-42"})
            assert status == 404
            assert headers["X-Request-Id"] == "trace-42" and json.loads(body)["request_id"] == "trace-42"
            status, headers, body = _request(proc, "GET", "/v1/models/nope", headers={"X-Request-Id": "not {a} token"})
            generated = headers["X-Request-Id"]
            assert len(generated) == 32 and json.loads(body)["request_id"] == generated

            async def grpc_miss() -> None:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.grpc}") as ch:
                    stub = grpcio_pb.grpc.ModelsServiceStub(ch)
                    try:
                        await stub.GetModel(grpcio_pb.pb2.GetModelRequest(id="nope"))
                    except grpc.aio.AioRpcError as e:
                        assert e.code() == grpc.StatusCode.NOT_FOUND

            asyncio.run(grpc_miss())
            after = _samples(proc)
        finally:
            proc.stop()

    def rest(method: str, code: str) -> float:
        return _value(after, "model_manager_requests_total", api="rest", method=method, code=code)

    assert rest("POST /v1/models", "200") == 1
    assert rest("GET /v1/models", "200") == 1
    assert rest("GET /v1/models/{id}", "404") >= 2  # the two misses, plus polls before the load finished
    assert rest("GET /metrics", "200") == 1  # the first scrape
    assert _value(after, "model_manager_request_duration_seconds_count", api="rest", method="GET /v1/models") == 1
    assert _value(after, "model_manager_requests_total", api="grpc", method=GET_MODEL, code="NOT_FOUND") == 1
    assert _value(after, "model_manager_loads_total", outcome="started") == 1
    assert _value(after, "model_manager_loads_total", outcome="succeeded") == 1
    total = sum(len(b) for b in files.values())
    assert _value(after, "model_manager_loader_bytes_total", source="hugging-face") == total
    assert _value(after, "model_manager_models", kind="base", loading_status="succeeded") == 1
    assert _value(after, "model_manager_models", kind="base", loading_status="requested") == 0
    assert ("model_manager_db_connections_in_use", frozenset()) in after

    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert lines, proc.output()
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [miss] = [line for line in lines if line.get("request_id") == "trace-42"]
    assert miss["route"] == "/v1/models/{id}" and miss["status"] == 404 and miss["duration_ms"] >= 0
    assert any(line.get("method") == GET_MODEL and line.get("status") == "NOT_FOUND" for line in lines)
