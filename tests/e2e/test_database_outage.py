"""The server on a private PostgreSQL cluster that is stopped, then frozen, while clients keep calling.

What must hold: calls fail fast with 503 / UNAVAILABLE (never hang, never 500), readiness says so within its own
short timeout, the process stays up (every replica sweeps leases, so one failover must not stop them all), and it
serves again by itself once the database is back.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.conftest import Proc, start
from tests.e2e.pgcluster import PrivateCluster, private_cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    c = private_cluster()
    yield c
    c.remove()


def _config(cluster: PrivateCluster, tmp: Path) -> dict[str, Any]:
    return {
        "database": {
            "host": "127.0.0.1",
            "port": cluster.port,
            "database": "mm",
            "createDatabase": True,
            "autoMigrate": True,
            "connectTimeout": "2s",
            "statementTimeout": "2s",
            "poolTimeout": "2s",
        },
        # A short lease makes the sweeper run every second, so it meets the outage many times.
        "loading": {"leaseDuration": "4s"},
        "objectStore": {"local": {"path": str(tmp / "objects")}},
        "loader": {"enable": False},
    }


def _get(proc: Proc, path: str, timeout: float = 10) -> tuple[int, float]:
    began = time.monotonic()
    try:
        with urllib.request.urlopen(f"{proc.base_url}{path}", timeout=timeout) as r:
            return r.status, time.monotonic() - began
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - began


class Load:
    """REST and gRPC clients calling in a loop; what they got, and the slowest answer."""

    def __init__(self, proc: Proc, grpcio_pb: Any) -> None:
        self.proc, self.pb = proc, grpcio_pb
        self.rest: Counter[int] = Counter()
        self.grpc: Counter[str] = Counter()
        self.slowest = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rest), threading.Thread(target=self._grpc)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def reset(self) -> None:
        self.rest.clear()
        self.grpc.clear()
        self.slowest = 0.0

    def _rest(self) -> None:
        while not self._stop.is_set():
            status, took = _get(self.proc, "/v1/models?include_loading_models=true")
            self.rest[status] += 1
            self.slowest = max(self.slowest, took)
            time.sleep(0.05)

    def _grpc(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.proc.grpc}") as channel:
            stub = self.pb.grpc.ModelsServiceStub(channel)
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    stub.ListModels(self.pb.pb2.ListModelsRequest(), timeout=10)
                    self.grpc["OK"] += 1
                except grpc.RpcError as e:
                    self.grpc[e.code().name] += 1
                self.slowest = max(self.slowest, time.monotonic() - began)
                time.sleep(0.05)


def _wait_serving(proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, proc.output()
        if _get(proc, "/readyz", timeout=5)[0] == 200 and _get(proc, "/v1/models")[0] == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"not serving again {timeout}s after the database came back:\n{proc.output()[-3000:]}")


def test_database_stopped_then_frozen_under_load(tmp_path: Path, cluster: PrivateCluster, grpcio_pb: Any) -> None:
    proc = start(_config(cluster, tmp_path), tmp_path)
    try:
        body = json.dumps({"id": "org/model", "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE"}).encode()
        req = urllib.request.Request(f"{proc.base_url}/v1/models", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        with Load(proc, grpcio_pb) as load:
            time.sleep(1)
            assert load.rest[200] > 0 and load.grpc["OK"] > 0

            # Gone for 30 s: refused connections.
            cluster.stop()
            time.sleep(2)
            load.reset()
            time.sleep(28)
            assert proc.popen.poll() is None, f"the server died with the database:\n{proc.output()[-3000:]}"
            assert set(load.rest) == {503}, load.rest
            assert set(load.grpc) == {"UNAVAILABLE"}, load.grpc
            assert _get(proc, "/readyz")[0] == 503
            cluster.start()
            _wait_serving(proc)

            # Frozen for 25 s: connections open, nothing answers.
            cluster.freeze()
            time.sleep(3)
            load.reset()
            status, took = _get(proc, "/readyz")
            assert status == 503 and took < 4, (status, took)
            time.sleep(22)
            assert proc.popen.poll() is None, proc.output()[-3000:]
            assert load.rest and set(load.rest) == {503}, load.rest
            assert load.grpc and set(load.grpc) == {"UNAVAILABLE"}, load.grpc
            assert load.slowest < 8, f"a call took {load.slowest:.1f}s while the database was frozen"
            cluster.thaw()
            _wait_serving(proc)
        with urllib.request.urlopen(f"{proc.base_url}/v1/models/org/model?include_loading_model=true") as r:
            assert json.load(r)["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]
