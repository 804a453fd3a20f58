"""Processes killed or stopped while they work, and several servers and loaders sharing one database and store.

What must hold: every write a client saw acknowledged survives a kill -9, the counters agree with the rows, nothing
stays LOADING for ever, SIGTERM lets in-flight calls finish and exits 0, and many loaders load each model once.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Proc, embedded_config, start
from tests.e2e.pgcluster import PrivateCluster, private_cluster
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread
from tests.helpers import hf_prefix

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    c = private_cluster()
    yield c
    c.remove()


def _call(proc: Proc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proc.base_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _all_ids(proc: Proc) -> tuple[list[dict[str, Any]], int]:
    models: list[dict[str, Any]] = []
    after, total = "", 0
    while True:
        status, page = _call(proc, "GET", f"/v1/models?include_loading_models=true&limit=500&after={after}")
        assert status == 200, page
        models += page["data"]
        total = page["total_items"]
        if not page["has_more"]:
            return models, total
        after = page["data"][-1]["id"]


def _database(backend: str, tmp: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "sqlite":
        return {"debug": {"sqlitePath": str(tmp / "db" / "mm.db")}}
    cluster: PrivateCluster = request.getfixturevalue("cluster")
    name = f"crash_{tmp.name[-12:].replace('-', '_')}"
    return {
        "database": {
            "host": "127.0.0.1",
            "port": cluster.port,
            "database": name,
            "createDatabase": True,
            "autoMigrate": True,
        }
    }


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_of_a_server_during_writes(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    hub = Hub()
    weights = bytes(range(256)) * (4096 * 8)
    hub.add("org/slow", {"config.json": b"{}", "model.safetensors": weights}, throttle=0.05)
    with serve_in_thread(hub.app()) as hub_url:
        cfg = {
            **embedded_config(tmp_path, loader=True),
            **_database(backend, tmp_path, request),
            "loading": {"leaseDuration": "2s"},
        }
        env = {"HF_ENDPOINT": hub_url}
        proc = start(cfg, tmp_path, env=env)
        assert _call(proc, "POST", "/v1/models", {"id": "org/slow", "source_repository": 2})[0] == 200
        _wait(
            lambda: (
                "downloaded"
                in _call(proc, "GET", "/v1/models/org/slow?include_loading_model=true")[1].get(
                    "loading_status_message", ""
                )
            ),
            "the load to start",
        )

        acknowledged: list[str] = []
        stop = threading.Event()

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                model_id = f"writer{n}/model-{i}"
                try:
                    status, _ = _call(proc, "POST", "/v1/models", {"id": model_id, "source_repository": 1})
                except OSError:
                    return  # the server is gone
                if status == 200:
                    acknowledged.append(model_id)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acknowledged) > 10

        hub.repos["org/slow"].throttle = 0
        proc = start(cfg, tmp_path, env=env)
        try:
            models, total = _all_ids(proc)
            ids = {m["id"] for m in models}
            assert set(acknowledged) <= ids, set(acknowledged) - ids  # every acknowledged write survived
            assert total == len(models)  # the trigger-kept counters agree with the rows
            # The load the kill interrupted is not stuck: its lease expires and it is loaded again.
            _wait(lambda: _call(proc, "GET", "/v1/models/org-slow")[0] == 200, "org/slow to be loaded again")
            stored = tmp_path / "objects" / hf_prefix("org/slow") / "model.safetensors"
            assert stored.read_bytes() == weights
        finally:
            assert proc.stop() == 0, proc.output()[-3000:]


def test_sigterm_under_load_lets_in_flight_calls_finish(tmp_path: Path, grpcio_pb: Any) -> None:
    import grpc

    proc = start({**embedded_config(tmp_path), "gracefulShutdownDelay": "1s"}, tmp_path)
    for i in range(50):
        _call(proc, "POST", "/v1/models", {"id": f"org/m{i}", "source_repository": 1})
    results: Counter[str] = Counter()
    stop = threading.Event()

    def rest() -> None:
        while not stop.is_set():
            try:
                status, _ = _call(proc, "GET", "/v1/models?include_loading_models=true")
                results[f"rest {status}"] += 1
            except urllib.error.URLError as e:
                # Refused once the listener is closed: the call was never accepted, so nothing was cut off.
                results["rest refused" if isinstance(e.reason, ConnectionRefusedError) else f"rest {e.reason!r}"] += 1
                time.sleep(0.05)
            except ConnectionResetError:
                # A connection that reached the listener's backlog as it closed is reset by the kernel: it was
                # never accepted either.
                results["rest reset before accept"] += 1
                time.sleep(0.05)

    def rpc() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{proc.grpc}") as channel:
            stub = grpcio_pb.grpc.ModelsServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.ListModels(grpcio_pb.pb2.ListModelsRequest(include_loading_models=True), timeout=10)
                    results["grpc OK"] += 1
                except grpc.RpcError as e:
                    results[f"grpc {e.code().name}"] += 1
                    time.sleep(0.05)

    threads = [threading.Thread(target=f) for f in (rest, rest, rpc)]
    for t in threads:
        t.start()
    time.sleep(1)
    began = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    code = proc.popen.wait(30)
    took = time.monotonic() - began
    stop.set()
    for t in threads:
        t.join(20)
    assert code == 0, proc.output()[-3000:]
    assert took < 15
    assert results["rest 200"] > 0 and results["grpc OK"] > 0, results
    # Only answered calls, and refusals of calls made after the listeners closed: no 5xx, nothing cut off.
    assert set(results) <= {"rest 200", "rest refused", "rest reset before accept", "grpc OK", "grpc UNAVAILABLE"}, (
        results,
        took,
        proc.output()[-6000:],
    )


def test_two_servers_and_three_loaders_load_each_model_once(tmp_path: Path, cluster: PrivateCluster) -> None:
    hub = Hub()
    repos = {
        f"org/model-{i}": {"config.json": json.dumps({"i": i}).encode(), "model.safetensors": bytes([i]) * (65536 * i)}
        for i in range(1, 11)
    }
    for repo_id, files in repos.items():
        hub.add(repo_id, files, throttle=0.01)
    with serve_in_thread(hub.app()) as hub_url:
        shared: dict[str, Any] = {
            "database": {
                "host": "127.0.0.1",
                "port": cluster.port,
                "database": "fleet",
                "createDatabase": True,
                "autoMigrate": True,
            },
            "objectStore": {"local": {"path": str(tmp_path / "objects")}},
            "loader": {"enable": False},
        }
        servers = [start(shared, tmp_path, role="server") for _ in range(2)]
        env = {"HF_ENDPOINT": hub_url}
        loaders = []
        try:
            for i in range(3):
                cfg = {
                    "objectStore": shared["objectStore"],
                    "loader": {
                        "workerServiceAddr": f"127.0.0.1:{servers[i % 2].worker}",
                        "modelLoadInterval": "200ms",
                        "concurrency": 2,
                    },
                }
                loaders.append(start(cfg, tmp_path, role="loader", wait_http=False, env=env))
            # 30 requests through both servers: each model requested three times; the repeats are refused.
            outcomes: Counter[int] = Counter()
            for attempt in range(3):
                for n, repo_id in enumerate(repos):
                    server = servers[(n + attempt) % 2]
                    outcomes[_call(server, "POST", "/v1/models", {"id": repo_id, "source_repository": 2})[0]] += 1
            assert outcomes == {200: 10, 409: 20}, outcomes

            def all_loaded() -> bool:
                return all(_call(servers[0], "GET", f"/v1/models/{r.replace('/', '-')}")[0] == 200 for r in repos)

            _wait(all_loaded, "every model to be loaded", timeout=120)
            for repo_id, files in repos.items():
                stored = tmp_path / "objects" / hf_prefix(repo_id)
                for name, data in files.items():
                    assert hashlib.sha256((stored / name).read_bytes()).digest() == hashlib.sha256(data).digest()
                downloads = [r for r in hub.repos[repo_id].requests if r.endswith("model.safetensors")]
                assert len(downloads) == 1, (repo_id, downloads)  # loaded once, by one loader
            for loader in loaders:
                assert loader.popen.poll() is None, loader.output()[-3000:]
        finally:
            for p in loaders + servers:
                p.stop()
