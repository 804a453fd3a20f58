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
