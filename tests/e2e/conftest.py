"""Run `model-manager` as a real subprocess on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import free_port


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    http: int
    grpc: int
    worker: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout)


def start(
    config: dict[str, Any], tmp: Path, role: str = "all", wait_http: bool = True, env: dict[str, str] | None = None
) -> Proc:
    """Start model-manager on free ports. A port picked as free can be taken by another process before ours binds
    it; such a start is retried on new ports rather than failing the test."""
    for _ in range(3):
        proc = _start_once(config, tmp, role, env)
        if not wait_http:
            return proc
        try:
            wait_ready(proc)
            return proc
        except AssertionError:
            if "address already in use" not in proc.output():
                raise
    raise AssertionError(f"no free ports after 3 tries:\n{proc.output()}")


def _start_once(config: dict[str, Any], tmp: Path, role: str, env: dict[str, str] | None) -> Proc:
    ports = {"httpPort": free_port(), "grpcPort": free_port(), "workerServiceGrpcPort": free_port()}
    if "internalGrpcPort" in config:
        ports.pop("workerServiceGrpcPort")
        config = {**config, "internalGrpcPort": free_port()}
    # The stand-in sources serve only what a test put there, and most tests request models for their ids alone: the
    # check of the source at create time is off unless a test turns it on (the fail-fast tests do).
    config = {**ports, **config, "loading": {"checkSource": False, **config.get("loading", {})}}
    path = tmp / f"config-{role}-{config['httpPort']}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = path.with_suffix(".log")
    popen = subprocess.Popen(
        [sys.executable, "-m", "model_manager", "run", "--config", str(path), "--role", role],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    proc = Proc(
        popen,
        config["httpPort"],
        config["grpcPort"],
        config.get("workerServiceGrpcPort") or config["internalGrpcPort"],
        log,
    )
    return proc


def wait_ready(proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"model-manager exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            with urllib.request.urlopen(f"{proc.base_url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"model-manager not ready after {timeout}s:\n{proc.output()}")


def wait_loaded(server: Proc, model_id: str, loader: Proc, timeout: float = 60) -> Any:
    """The model `model_id` as `server` answers it, once it is loaded (GET no longer 404); `loader` must stay up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.base_url}/v1/models/{model_id}", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
        assert loader.popen.poll() is None, loader.output()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"{model_id} not loaded in {timeout}s:\n{loader.output()[-3000:]}")


def embedded_config(tmp: Path, loader: bool = False) -> dict[str, Any]:
    """The embedded default on tmp; the in-process loader is off unless a test is about loading."""
    return {
        "debug": {"sqlitePath": str(tmp / "db" / "mm.db")},
        "objectStore": {"local": {"path": str(tmp / "objects")}},
        "loader": {"enable": loader, "modelLoadInterval": "200ms", "progressInterval": "200ms"},
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Proc]:
    proc = start(embedded_config(tmp_path), tmp_path)
    yield proc
    proc.stop()


def psql(database: str, sql: str) -> str:
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def fresh_database(pg_url: str) -> Iterator[dict[str, Any]]:
    """The `database` section of a config naming a new PostgreSQL database, created and migrated by the first
    process that opens it, dropped after the test."""
    name = f"mm_e2e_{uuid.uuid4().hex[:10]}"
    url = make_url(pg_url)
    yield {
        "host": url.host,
        "port": url.port or 5432,
        "username": url.username,
        "database": name,
        "createDatabase": True,
        "autoMigrate": True,
    }
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
