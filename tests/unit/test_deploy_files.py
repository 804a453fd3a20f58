"""The deployment files shipped with the project are valid configs and compose wiring (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from model_manager.app import check_role
from model_manager.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_configs_load_for_their_roles() -> None:
    server = load_config(ROOT / "deploy" / "server.yaml")
    check_role(server, "server")
    assert server.database is not None and server.database.password_env_name == "DB_PASSWORD"
    loader = load_config(ROOT / "deploy" / "loader.yaml")
    check_role(loader, "loader")
    assert loader.loader.worker_service_addr == "server:8082"


def test_compose_runs_each_role_with_its_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    for role in ("server", "loader"):
        svc = compose["services"][role]
        assert svc["command"][-1] == role
        mounted = svc["volumes"][0].split(":")
        assert (ROOT / mounted[0]).exists() and mounted[1] == svc["command"][2]


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["model-manager"]' in text
    assert "COPY deploy/container.yaml /etc/model-manager/config.yaml" in text
    container = load_config(ROOT / "deploy" / "container.yaml")
    assert container.listen_hosts() == ("", "", "")  # reachable from outside the container
    assert container.sqlite_path.startswith("/data/") and "chown mm /data" in text


def test_the_image_checks_its_health_on_the_rest_port_and_loaders_opt_out() -> None:
    text = (ROOT / "Dockerfile").read_text()
    check = next(line for line in text.splitlines() if line.strip().startswith("CMD") and "healthz" in line)
    container = load_config(ROOT / "deploy" / "container.yaml")
    assert f"127.0.0.1:{container.http_port}/healthz" in check and "HEALTHCHECK" in text
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert compose["services"]["loader"]["healthcheck"] == {"disable": True}


def test_the_quick_start_listens_on_loopback_only() -> None:
    cfg = load_config(ROOT / "config.example.yaml")
    assert cfg.listen_hosts() == ("127.0.0.1", "127.0.0.1", "127.0.0.1")
    assert load_config(ROOT / "deploy" / "server.yaml").listen_hosts() == ("", "", "")
