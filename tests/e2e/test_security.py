"""Auth through the real entry points: keys made by the CLI, two server replicas on one PostgreSQL, a loader role
authenticated by LLMO_CLUSTER_REGISTRATION_KEY, the OpenAI SDK, revocation seen by every replica, and no secret in
any log, error body or the database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.e2e.conftest import Proc, start
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread

KEY = re.compile(r"^mmk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "model_manager", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def _http(proc: Proc, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proc.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_keys_guard_two_replicas_and_a_loader_and_nothing_leaks(
    tmp_path: Path, fresh_database: dict[str, Any], s3_endpoint: str, s3_bucket: str
) -> None:
    hf_token = f"hf_{uuid.uuid4().hex}"
    s3_secret = f"s3secret{uuid.uuid4().hex}"
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": s3_secret, "HF_TOKEN": hf_token}
    store = {"s3": {"endpointUrl": s3_endpoint, "region": "us-east-1", "bucket": s3_bucket}}
    config = {
        "database": fresh_database,
        "auth": {"enable": True, "keyCacheTtl": "1s"},
        "objectStore": store,
        "loader": {"enable": False},
    }
    config_file = tmp_path / "server.yaml"
    config_file.write_text(yaml.safe_dump(config))

    # Keys from the CLI: the key alone on stdout, its id and scope on stderr.
    made = _cli("keys", "create", "--config", str(config_file), "--role", "admin", "--project", "p1", "--name", "ops")
    assert made.returncode == 0, made.stderr
    admin_key = made.stdout.strip()
    match = KEY.match(admin_key)
    assert match and made.stdout == admin_key + "\n", made.stdout
    admin_id = match.group(1)
    assert f"created API key {admin_id} (admin; tenant default-tenant-id, organization default, project p1)" in (
        made.stderr
    )
    made = _cli("keys", "create", "--config", str(config_file), "--role", "worker", "--cluster", "east")
    assert made.returncode == 0, made.stderr
    worker_key = made.stdout.strip()
    assert KEY.match(worker_key)
    outputs = [made.stderr]  # its stdout is the key itself
    bad = _cli("keys", "create", "--config", str(config_file), "--role", "worker", "--project", "p1")
    assert bad.returncode == 2 and "worker key serves a whole tenant" in bad.stderr

    hub = Hub()
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": bytes(range(256)) * 1024}
    hub.add("org/gated", files, gated=True, token=hf_token)
    procs: list[Proc] = []
    with serve_in_thread(hub.app()) as hub_url:
        try:
            one = start(config, tmp_path, role="server", env=env)
            two = start(config, tmp_path, role="server", env=env)
            procs += [one, two]
            loader_config = {
                "objectStore": store,
                "auth": {"enable": True},
                "loader": {"workerServiceAddr": f"127.0.0.1:{one.worker}", "modelLoadInterval": "200ms"},
            }
            # Without its key the loader role does not start.
            loader_file = tmp_path / "loader.yaml"
            loader_file.write_text(yaml.safe_dump(loader_config))
            refused = _cli("run", "--config", str(loader_file), "--role", "loader", env={"HF_ENDPOINT": hub_url})
            assert refused.returncode == 2 and "LLMO_CLUSTER_REGISTRATION_KEY: required" in refused.stderr
            # With a key that is not a worker key, it stops at once, saying so.
            wrong = {"HF_ENDPOINT": hub_url, "LLMO_CLUSTER_REGISTRATION_KEY": admin_key}
            refused = _cli("run", "--config", str(loader_file), "--role", "loader", env=wrong)
            assert refused.returncode == 2, refused.stderr
            assert "the worker API refused this loader: the worker API needs a worker key" in refused.stderr
            assert "Traceback" not in refused.stderr
            outputs.append(refused.stderr)
            loader_env = {**env, "HF_ENDPOINT": hub_url, "LLMO_CLUSTER_REGISTRATION_KEY": worker_key}
            loader = start(loader_config, tmp_path, role="loader", wait_http=False, env=loader_env)
            procs.append(loader)

            # The OpenAI SDK with api_key works unchanged; without a valid key it gets 401.
            sdk = openai.OpenAI(base_url=f"{one.base_url}/v1", api_key=admin_key)
            assert list(sdk.models.list()) == []
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"{one.base_url}/v1", api_key="mmk_000000000000_" + "A" * 43).models.list()
            status, body = _http(one, "GET", "/v1/models", worker_key)
            assert status == 403, body

            status, body = _http(one, "POST", "/v1/models", admin_key, {"id": "org/gated", "source_repository": 2})
            assert status == 200, body

            def loaded() -> Any:
                status, body = _http(two, "GET", "/v1/models/org-gated", admin_key)  # the other replica
                return body if status == 200 else None

            model = _wait(loaded, f"not loaded:\n{loader.output()}")
            assert model["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"

            listed = _cli("keys", "list", "--config", str(config_file), "--json")
            assert listed.returncode == 0, listed.stderr
            rows = {row["id"]: row for row in json.loads(listed.stdout)}
            assert rows[admin_id]["role"] == "admin" and rows[admin_id]["last_used_at"]
            assert {row["role"] for row in rows.values()} == {"admin", "worker"}
            table = _cli("keys", "list", "--config", str(config_file))
            assert admin_id in table.stdout and "east" in table.stdout
            outputs += [listed.stdout, listed.stderr, table.stdout, table.stderr]

            # Revoked, the key stops working on both replicas within a few seconds.
            revoked = _cli("keys", "revoke", "--config", str(config_file), admin_id)
            assert revoked.returncode == 0 and f"revoked API key {admin_id}" in revoked.stderr
            outputs.append(revoked.stderr)
            t0 = time.monotonic()
            for proc in (one, two):
                _wait(lambda p=proc: _http(p, "GET", "/v1/models", admin_key)[0] == 401, "still accepted", 5)
            assert time.monotonic() - t0 < 5
            status, body = _http(one, "GET", "/v1/models", admin_key)
            outputs.append(json.dumps(body))
            assert _cli("keys", "revoke", "--config", str(config_file), "000000000000").returncode == 1
        finally:
            for proc in procs:
                proc.stop()

    # Nothing secret in any log, CLI output, error body or the database.
    logs = "\n".join([p.output() for p in procs] + outputs)
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", fresh_database["database"]], capture_output=True, text=True
    )
    assert dump.returncode == 0, dump.stderr
    assert "api_keys" in dump.stdout and admin_id in dump.stdout
    secrets = {"admin key": admin_key, "worker key": worker_key, "HF token": hf_token, "S3 secret": s3_secret}
    secrets |= {f"{name} secret part": value.split("_", 2)[2] for name, value in secrets.items() if "key" in name}
    for name, value in secrets.items():
        assert value not in logs, f"{name} appears in the logs"
        assert value not in dump.stdout, f"{name} appears in the database"
