"""The Kubernetes manifests: valid against a pinned Kubernetes version's schemas, a kustomization that builds, and
configs that load for their roles; checked offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from model_manager.app import check_role
from model_manager.config import load_config
from model_manager.core.oci_ref import parse_oci

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"  # the oldest release still supported upstream when these were written


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(KUSTOMIZE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def test_every_manifest_is_valid_for_the_pinned_kubernetes_version() -> None:
    docs = _documents()
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service", "Job"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises, naming the bad field


def test_the_validator_catches_a_mistake() -> None:
    bad = _by_kind("Deployment")["model-manager-server"]
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((KUSTOMIZE / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in KUSTOMIZE.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (Debian package) not installed")
def test_kubectl_kustomize_builds_it() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(KUSTOMIZE)], capture_output=True, text=True, check=True)
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(d["kind"] for d in built) == sorted(d["kind"] for d in _documents())
    for doc in built:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "model-manager"
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_configs_load_for_their_roles(tmp_path: Path) -> None:
    maps = _by_kind("ConfigMap")
    for name, role in (("model-manager-server", "server"), ("model-manager-loader", "loader")):
        path = tmp_path / f"{role}.yaml"
        path.write_text(maps[name]["data"]["config.yaml"])
        config = load_config(path)
        check_role(config, role)
        assert config.logging.format == "json"
    server = load_config(tmp_path / "server.yaml")
    assert server.auth.enable and server.database is not None and not server.database.auto_migrate
    loader = load_config(tmp_path / "loader.yaml")
    services = _by_kind("Service")
    host, port = loader.loader.worker_service_addr.split(":")
    assert services[host]["spec"]["ports"][0]["port"] == int(port)


def test_servers_are_probed_locked_down_and_reached_by_their_services() -> None:
    deployments = _by_kind("Deployment")
    server = deployments["model-manager-server"]["spec"]["template"]
    [container] = server["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "grpc": 8081, "worker": 8082}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            secrets = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e]
            assert set(secrets) == {"model-manager-secrets"}  # secrets by reference only, never inline
    labels = server["metadata"]["labels"]
    for svc in _by_kind("Service").values():
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] in ports
    job = _by_kind("Job")["model-manager-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"][0] == "migrate"


def test_the_engine_example_points_at_the_hf_endpoint_of_the_http_service() -> None:
    [engine] = [d for d in yaml.safe_load_all((ROOT / "deploy" / "examples" / "engine-vllm.yaml").read_text()) if d]
    kubernetes_validate.validate(engine, KUBERNETES_VERSION, strict=True)
    env = {e["name"]: e for e in engine["spec"]["template"]["spec"]["containers"][0]["env"]}
    service = _by_kind("Service")["model-manager-http"]
    port = service["spec"]["ports"][0]["port"]
    assert env["HF_ENDPOINT"]["value"] == f"http://model-manager-http:{port}/hf"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "engine-hf-token"


def test_the_image_volume_example_mounts_a_pinned_pushed_artifact_read_only() -> None:
    path = ROOT / "deploy" / "examples" / "engine-image-volume.yaml"
    [engine] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kubernetes_validate.validate(engine, "1.33.0", strict=True)  # image volumes are beta (on) from 1.33
    spec = engine["spec"]["template"]["spec"]
    [volume] = spec["volumes"]
    ref = parse_oci(volume["image"]["reference"])
    assert ref.digest and not ref.tag  # a digest: a restarted pod mounts the same model
    [mount] = spec["containers"][0]["volumeMounts"]
    assert mount["name"] == volume["name"] and mount["readOnly"] is True
    assert spec["containers"][0]["args"][1] == mount["mountPath"]
