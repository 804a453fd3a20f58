"""Two server processes on one PostgreSQL, each with its response cache: a write acknowledged by one is what the
other answers next, by REST and by gRPC, for single models and for listings."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel

from model_manager.proto.llmariner.models.server import v1 as pb
from tests.e2e.conftest import Proc, start


def _http(proc: Proc, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proc.base_url + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_a_write_on_one_replica_is_read_on_the_other(tmp_path: Path, fresh_database: dict[str, Any]) -> None:
    config = {
        "database": fresh_database,
        "objectStore": {"local": {"path": str(tmp_path / "objects")}},
        "loader": {"enable": False},
    }
    one = start(config, tmp_path, role="server")
    two = start(config, tmp_path, role="server")
    try:
        for i in range(3):
            _http(one, "POST", "/v1/models", {"id": f"org/m{i}", "source_repository": 2, "is_project_scoped": True})
        listing = "/v1/models?include_loading_models=true"
        assert _http(two, "GET", listing)["total_items"] == 3  # fills two's cache

        async def grpc_replicas(port: int) -> int:
            async with Channel("127.0.0.1", port) as ch:
                model = await pb.ModelsServiceStub(ch).get_model(
                    pb.GetModelRequest(id="org/m1", include_loading_model=True)
                )
            return model.config.runtime_config.replicas if model.config and model.config.runtime_config else 0

        for n in range(2, 12):
            # Read on two first (so its cache holds the old answer), then write on one, then read on two.
            _http(two, "GET", "/v1/models/org/m1?include_loading_model=true")
            body = {
                "model": {"config": {"runtime_config": {"replicas": n}}},
                "update_mask": "config.runtime_config.replicas",
            }
            _http(one, "PATCH", "/v1/models/org/m1", body)
            got = _http(two, "GET", "/v1/models/org/m1?include_loading_model=true")
            assert got["config"]["runtime_config"]["replicas"] == n
            assert asyncio.run(grpc_replicas(two.grpc)) == n
        _http(one, "DELETE", "/v1/models/org/m2")
        assert sorted(m["id"] for m in _http(two, "GET", listing)["data"]) == ["org/m0", "org/m1"]
    finally:
        one.stop()
        two.stop()


def _cache(proc: Proc) -> dict[str, float]:
    with urllib.request.urlopen(proc.base_url + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    found = {"hit": 0.0, "miss": 0.0}
    for line in lines:
        if line.startswith("model_manager_response_cache_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.slow
def test_writes_to_other_models_on_another_replica_leave_cached_answers_in_place(
    tmp_path: Path, fresh_database: dict[str, Any]
) -> None:
    """Scoped invalidation across processes: replica two keeps answering org-a from its cache while replica one
    writes org-b over and over (as loaders reporting progress do), and sees the first write to org-a itself."""
    config = {
        "database": fresh_database,
        "objectStore": {"local": {"path": str(tmp_path / "objects")}},
        "loader": {"enable": False},
        "loading": {"checkSource": False},
    }
    one = start(config, tmp_path, role="server")
    two = start(config, tmp_path, role="server")
    try:
        for model in ("org/a", "org/b"):
            _http(one, "POST", "/v1/models", {"id": model, "source_repository": 2, "is_project_scoped": True})
        get = "/v1/models/org/a?include_loading_model=true"
        first = _http(two, "GET", get)
        before = _cache(two)
        for n in range(2, 12):
            body = {
                "model": {"config": {"runtime_config": {"replicas": n}}},
                "update_mask": "config.runtime_config.replicas",
            }
            _http(one, "PATCH", "/v1/models/org/b", body)  # a write to another model, on the other replica
            assert _http(two, "GET", get) == first
        after = _cache(two)
        assert after["miss"] == before["miss"] and after["hit"] >= before["hit"] + 10
        body = {
            "model": {"config": {"runtime_config": {"replicas": 7}}},
            "update_mask": "config.runtime_config.replicas",
        }
        _http(one, "PATCH", "/v1/models/org/a", body)
        assert _http(two, "GET", get)["config"]["runtime_config"]["replicas"] == 7  # its own write: seen at once
        assert _cache(two)["miss"] == after["miss"] + 1
    finally:
        one.stop()
        two.stop()
