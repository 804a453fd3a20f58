"""The pieces of the OCI support that need no registry: references, logins from config and Docker's config.json,
auth challenges, and the ModelPack media types and sizes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from model_manager.config import ConfigError, DownloaderConfig, OciConfig, OciCredential, parse_config
from model_manager.core.ids import InvalidId
from model_manager.core.oci_ref import parse_oci
from model_manager.loader.errors import PermanentError
from model_manager.loader.sources.factory import SourceFactory
from model_manager.oci import modelpack
from model_manager.oci.auth import Login, Logins, parse_challenge
from model_manager.proto.llmariner.models.server import v1 as pb

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("value", "registry", "repository", "tag", "digest"),
    [
        ("harbor.internal/models/llama:v1", "harbor.internal", "models/llama", "v1", ""),
        ("oci://localhost:5000/m", "localhost:5000", "m", "latest", ""),
        (f"r.io/a/b/c@{DIGEST}", "r.io", "a/b/c", "", DIGEST),
        (f"r.io/a:v2@{DIGEST}", "r.io", "a", "v2", DIGEST),
        ("127.0.0.1:5000/x__y.z-w:1.0_rc", "127.0.0.1:5000", "x__y.z-w", "1.0_rc", ""),
    ],
)
def test_references_read_as_registries_read_them(
    value: str, registry: str, repository: str, tag: str, digest: str
) -> None:
    ref = parse_oci(value)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.reference == (digest or tag)
    assert parse_oci(str(ref)) == ref


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("registry-without-repository", "expected HOST"),
        ("r.io/Upper/case:v1", "lower-case"),
        ("r.io/a/../b:v1", "lower-case"),
        ("r.io/a%2fb:v1", "lower-case"),
        ("r.io/a:bad/tag", "the tag"),
        ("r.io/a:-tag", "tag"),
        ("r.io/a@sha256:short", "digest"),
        ("bad host/a:v1", "registry host"),
        ("r.io:99999/a:v1", "registry host"),
    ],
)
def test_bad_references_are_refused_naming_the_part(value: str, says: str) -> None:
    with pytest.raises(InvalidId, match=says):
        parse_oci(value)
    with pytest.raises(InvalidId, match="oci://"):
        parse_oci("r.io/a:v1", "destination", scheme=True)


def test_logins_come_from_the_config_and_dockers_config_json(tmp_path: Path) -> None:
    docker = tmp_path / "config.json"
    encoded = base64.b64encode(b"robot$ci:tok:en").decode()
    docker.write_text(
        json.dumps(
            {
                "auths": {
                    "https://harbor.internal/v2/": {"auth": encoded},
                    "registry.local:5000": {"username": "u", "password": "p"},
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                    "both.io": {"auth": base64.b64encode(b"old:old").decode()},
                },
                "credsStore": "desktop",
            }
        )
    )
    config = OciConfig(
        docker_config=str(docker),
        credentials=(OciCredential(registry="both.io", username="new", password_env_name="BOTH_PW"),),
    )
    logins = Logins(config, {"BOTH_PW": "s3cret"})
    assert logins.get("harbor.internal") == Login("robot$ci", "tok:en")  # a password may hold ":"
    assert logins.get("registry.local:5000") == Login("u", "p")
    assert logins.get("docker.io") == Login("hub", "pw")
    assert logins.get("both.io") == Login("new", "s3cret")  # the config's own entry wins
    assert logins.get("elsewhere.io") is None
    with pytest.raises(ConfigError, match="BOTH_PW is not set"):
        Logins(config, {})
    docker.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        Logins(config, {"BOTH_PW": "x"})


def test_config_keys_are_checked() -> None:
    oci = parse_config({"oci": {"insecureRegistries": ["r.local:5000"], "chunkSize": 8 << 20}}).oci
    assert oci.insecure_registries == ("r.local:5000",) and oci.chunk_size == 8 << 20
    with pytest.raises(ConfigError, match="insecureRegistries"):
        parse_config({"oci": {"insecureRegistries": ["http://r.local"]}})
    with pytest.raises(ConfigError, match="registry"):
        parse_config({"oci": {"credentials": [{"registry": "a b", "username": "u", "passwordEnvName": "P"}]}})


def test_challenges_are_read_with_quoted_and_bare_values() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge("Basic realm=registry").params == {"realm": "registry"}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("model.safetensors", modelpack.WEIGHT),
        ("model-00001-of-00002.safetensors", modelpack.WEIGHT),
        ("blobs/sha256-" + "a" * 64, modelpack.WEIGHT),
        ("llama.gguf", modelpack.WEIGHT),
        ("config.json", modelpack.WEIGHT_CONFIG),
        ("tokenizer.model", modelpack.WEIGHT_CONFIG),
        ("1_Pooling/config.json", modelpack.WEIGHT_CONFIG),
        ("README.md", modelpack.DOC),
        ("LICENSE", modelpack.DOC),
        ("modeling_custom.py", modelpack.CODE),
    ],
)
def test_files_get_the_media_type_of_what_they_are(path: str, kind: str) -> None:
    assert modelpack.media_type(path) == kind


@pytest.mark.parametrize(("count", "text"), [(22_713_216, "22.7M"), (8_000_000_000, "8B"), (1_500, "1.5K"), (7, "7")])
def test_parameter_counts_are_written_as_modelpack_writes_them(count: int, text: str) -> None:
    assert modelpack.param_size(count) == text
    assert abs(modelpack.parse_param_size(text) - count) <= count * 0.005


def test_a_manifest_that_names_unsafe_or_duplicate_paths_is_not_a_model() -> None:
    def manifest(*paths: str) -> bytes:
        layers = [
            {"mediaType": modelpack.WEIGHT, "digest": DIGEST, "size": 1, "annotations": {modelpack.FILEPATH: p}}
            for p in paths
        ]
        return json.dumps({"schemaVersion": 2, "config": {"digest": DIGEST, "size": 2}, "layers": layers}).encode()

    assert [x.path for x in modelpack.read_manifest(manifest("a/b.json", "c"), "").layers] == ["a/b.json", "c"]
    for bad in (("../etc/passwd",), ("/abs",), ("a//b",), ("x", "x")):
        with pytest.raises(modelpack.NotAModel):
            modelpack.read_manifest(manifest(*bad), "")
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    with pytest.raises(modelpack.NotAModel, match="index"):
        modelpack.read_manifest(index, "")


async def test_a_loader_reaches_only_the_allowed_registries() -> None:
    async with aiohttp.ClientSession() as http:
        factory = SourceFactory(http, DownloaderConfig(), None, None, OciConfig(allowed_registries=("a.io",)))
        assert factory.base("a.io/m:v1", pb.SourceRepository.OCI).name == "OCI artifact a.io/m:v1"
        with pytest.raises(PermanentError, match=r"not in oci\.allowedRegistries"):
            factory.base("b.io/m:v1", pb.SourceRepository.OCI)
