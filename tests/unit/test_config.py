"""Configuration loading: defaults, upstream compatibility, errors that name the key path."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import yaml

from model_manager.config import ConfigError, load_config, parse_config, reference

ROOT = Path(__file__).resolve().parents[2]

UPSTREAM_SERVER = """
httpPort: 8080
grpcPort: 8081
internalGrpcPort: 8082
objectStore:
  s3:
    pathPrefix: models
debug:
  standalone: true
  sqlitePath: /tmp/model_manager.db
"""

UPSTREAM_LOADER = """
objectStore:
  s3:
    endpointUrl: http://localhost:9000
    region: us-east-1
    bucket: llmariner
    pathPrefix: models
    baseModelPathPrefix: base-models
baseModels:
- google/gemma-2b-it-q4_0
- TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_0.gguf
models:
- model: abc/lora
  baseModel: google/gemma-2b
  adapterType: lora
runOnce: true
modelLoadInterval: 30s
downloader:
  kind: huggingFace
  huggingFace:
    cacheDir: /tmp/.cache/huggingface/hub
modelManagerServerWorkerServiceAddr: localhost:8082
componentStatusSender:
  enable: false
debug:
  standalone: true
"""


def test_example_config_is_the_embedded_default() -> None:
    cfg = load_config(ROOT / "config.example.yaml")
    assert cfg.database is None and cfg.object_store.s3 is None
    assert (cfg.http_port, cfg.grpc_port, cfg.worker_grpc_port) == (8080, 8081, 8082)


def test_upstream_server_file() -> None:
    cfg = parse_config(yaml.safe_load(UPSTREAM_SERVER))
    assert cfg.worker_grpc_port == 8082
    assert cfg.sqlite_path == "/tmp/model_manager.db"
    assert cfg.object_store.s3 is not None and cfg.object_store.s3.bucket == ""
    assert cfg.object_store.path_prefix == "models"


def test_upstream_loader_file(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        cfg = parse_config(yaml.safe_load(UPSTREAM_LOADER))
    assert cfg.loader.base_models[0] == "google/gemma-2b-it-q4_0"
    assert cfg.loader.models[0].adapter_type == "lora"
    assert cfg.loader.run_once and cfg.loader.model_load_interval == 30
    assert cfg.loader.worker_service_addr == "localhost:8082"
    assert cfg.loader.downloader.hf_cache_dir == "/tmp/.cache/huggingface/hub"
    assert cfg.object_store.base_model_path_prefix == "base-models"
    assert "componentStatusSender" in caplog.text


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"httpPrt": 1}, "httpPrt: unknown key"),
        ({"objectStore": {"s3": {"bukket": "x"}}}, "objectStore.s3.bukket: unknown key"),
        ({"httpPort": "eighty"}, "httpPort: must be an integer"),
        ({"httpPort": 70000}, "httpPort: must be between 0 and 65535"),
        ({"database": {"host": "db"}}, "database.database: required"),
        ({"loading": {"leaseDuration": "soon"}}, "loading.leaseDuration: must be a duration"),
        ({"loader": {"downloader": {"kind": "ftp"}}}, "loader.downloader.kind: must be one of"),
        ({"loader": {"downloader": {"kind": "s3"}}}, "loader.downloader.s3: required"),
        ({"models": [{"model": "x"}]}, r"models\[0\].baseModel: required"),
        ({"internalGrpcPort": 1, "workerServiceGrpcPort": 2}, "not both"),
        ([1, 2], "<root>: must be a mapping"),
    ],
)
def test_errors_name_the_key_path(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


def test_durations() -> None:
    cfg = parse_config(
        {"loading": {"leaseDuration": "90s"}, "gracefulShutdownDelay": "1m", "loader": {"modelLoadInterval": "500ms"}}
    )
    assert (cfg.loading.lease_seconds, cfg.graceful_shutdown_delay, cfg.loader.model_load_interval) == (90, 60, 0.5)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"auth": {"keyCacheTtl": "0s"}}, "auth.keyCacheTtl: must be greater than 0"),
        ({"loader": {"baseModels": ["org/name@"]}}, r"loader\.baseModels\[0\] 'org/name@': the revision after '@'"),
        ({"baseModels": ["ok/one", "just-a-name"]}, r"^baseModels\[1\] 'just-a-name' is not a Hugging Face id"),
        (
            {"loader": {"downloader": {"kind": "ollama"}, "baseModels": ["gemma"]}},
            r"loader\.baseModels\[0\] 'gemma' is not an Ollama id",
        ),
        ({"loader": {"baseModels": ["../etc"]}}, r"loader\.baseModels\[0\] must not contain '\.' or '\.\.'"),
        ({"models": [{"model": "flat", "baseModel": "b"}]}, r"models\[0\]\.model 'flat' is not a Hugging Face id"),
        ({"models": [{"model": "o/m", "baseModel": "b", "adapterType": "dora"}]}, "adapterType: must be one of lora"),
        ({"loader": {"workerServiceAddr": "server"}}, "loader.workerServiceAddr: must be host:port"),
        (
            {"modelManagerServerWorkerServiceAddr": "server:x"},
            "^modelManagerServerWorkerServiceAddr: must be host:port",
        ),
        ({"database": {"host": "h", "database": "d", "ssl": {"mode": "on"}}}, "database.ssl.mode: must be one of"),
        (
            {"database": {"host": "h", "database": "d", "ssl": {"rootCert": "/ca.pem"}}},
            "database.ssl.rootCert: needs ssl.mode",
        ),
        ({"objectStore": {"s3": {"assumeRole": {"externalId": "x"}}}}, "objectStore.s3.assumeRole.roleArn: required"),
        ({"loader": {"progressInterval": "0s"}}, "loader.progressInterval: must be greater than 0"),
        ({"debug": "yes"}, "debug: must be a mapping"),
        ({"debug": {"standalone": True, "verbose": True}}, "debug.verbose: unknown key"),
    ],
)
def test_refused_settings_name_the_key(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


def test_valid_static_models_and_settings_that_are_off_are_accepted() -> None:
    cfg = parse_config(
        {
            "auth": {"enable": False},
            "loader": {
                "baseModels": ["org/name@v1.0", "org/name/file.gguf"],
                "models": [{"model": "o/m", "baseModel": "b", "adapterType": "LoRA"}],
            },
        }
    )
    assert cfg.loader.base_models == ("org/name@v1.0", "org/name/file.gguf")
    assert cfg.loader.models[0].adapter_type == "lora"
    ollama = parse_config({"loader": {"downloader": {"kind": "ollama"}, "baseModels": ["gemma:2b", "me/model:q4"]}})
    assert ollama.loader.base_models == ("gemma:2b", "me/model:q4")


def test_ignored_upstream_keys_are_warned_about_by_full_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse_config(
            {
                "downloader": {"ollama": {"port": 11434}},
                "database": {"host": "h", "database": "d", "originalDatabase": "x"},
            }
        )
    assert "downloader.ollama.port" in caplog.text and "database.originalDatabase" in caplog.text


def test_a_private_ca_is_used_to_verify_the_database(tmp_path: Path) -> None:
    from model_manager.store.database import connect_args

    ca = ROOT / "tests" / "data" / "ca.pem"
    cfg = parse_config({"database": {"host": "h", "database": "d", "ssl": {"mode": "verify-ca", "rootCert": str(ca)}}})
    assert cfg.database is not None
    context = connect_args(cfg.database)["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is False
    assert len(context.get_ca_certs()) == 1


def test_the_configuration_reference_is_generated_from_the_declarations() -> None:
    # docs/configuration.md documents every key; `make docs` regenerates its table from config/settings.py.
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert reference.rewrite(text) == text, "the key reference in docs/configuration.md is stale: run `make docs`"
    for key in ("loader.baseModels", "objectStore.s3.partSizeMiB", "loading.leaseDuration", "auth.enable"):
        assert f"`{key}`" in text


def test_every_yaml_example_in_the_docs_is_a_valid_config() -> None:
    blocks = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks += [(doc.name, b.split("```", 1)[0]) for b in doc.read_text().split("```yaml\n")[1:]]
    assert blocks
    for name, block in blocks:
        try:
            parse_config(yaml.safe_load(block))
        except ConfigError as e:
            raise AssertionError(f"a YAML example in {name} is not a valid config: {e}") from e
