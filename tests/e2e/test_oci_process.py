"""A model's trip through a registry, as operators run it: `model-manager run` loads it from the hub stand-in,
`models push --wait` (the CLI) puts it in a stock registry behind htpasswd auth as a ModelPack artifact, with the
login from a Docker config.json, and a second `model-manager run` loads it back from oci:// with the login from
oci.credentials (over REST, then by digest from the CLI, sharing the copy); a push over gRPC (grpcio stubs) to the
open registry is read by oras and requested over gRPC by the second server. Bytes are compared at each step."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import oras.provider

from tests.e2e.conftest import Proc, embedded_config, start, wait_loaded
from tests.fakes.hub import Hub
from tests.fakes.oci_registry import PASSWORD, USER
from tests.fakes.threaded import serve_in_thread

FILES = {
    "config.json": json.dumps(
        {"architectures": ["BertModel"], "model_type": "bert", "torch_dtype": "float32"}
    ).encode(),
    "README.md": b"---\nlicense: apache-2.0\n---\n# a model\n",
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": bytes(range(256)) * (10 * 1024),  # 2.5 MiB: pushed in 1 MiB chunks
}


def _cli(proc: Proc, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_MANAGER_URL": proc.base_url}
    command = [sys.executable, "-m", "model_manager", "models", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _post(proc: Proc, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        proc.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def _stored(root: Path, name: str) -> bytes:
    [found] = [p for p in root.rglob(name) if p.is_file()]
    return found.read_bytes()


def test_a_model_goes_through_a_registry_and_back_byte_exact(
    tmp_path: Path, oci_registry: Any, oci_registry_basic: Any, grpcio_pb: Any
) -> None:
    hub = Hub()
    hub.add("org/minilm", FILES)
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    docker.write_text(json.dumps({"auths": {f"http://{oci_registry_basic.host}": {"auth": login}}}))
    insecure = [oci_registry.host, oci_registry_basic.host]
    destination = f"{oci_registry_basic.host}/models/minilm:v1"
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    with serve_in_thread(hub.app()) as hub_url:
        one_config = {
            **embedded_config(one_dir, loader=True),
            "oci": {"insecureRegistries": insecure, "dockerConfig": str(docker), "chunkSize": 1 << 20},
        }
        one = start(one_config, one_dir, env={"HF_ENDPOINT": hub_url})
        two_config = {
            **embedded_config(two_dir, loader=True),
            "oci": {
                "insecureRegistries": insecure,
                "credentials": [{"registry": oci_registry_basic.host, "username": USER, "passwordEnvName": "REG_PW"}],
            },
        }
        two = start(two_config, two_dir, env={"REG_PW": PASSWORD, "DOCKER_CONFIG": str(tmp_path / "none")})
        try:
            made = _cli(one, "create", "base", "org/minilm", "--source-repository", "hugging-face", "--wait")
            assert made.returncode == 0, made.stderr

            pushed = _cli(one, "push", "org-minilm", f"oci://{destination}", "--wait")
            assert pushed.returncode == 0, pushed.stderr + one.output()[-3000:]
            assert re.search(r"^org-minilm: pushed 2\.5 MiB in 4 files after \d+ s$", pushed.stdout, re.M), (
                pushed.stdout
            )
            digest = re.search(rf"^{re.escape(destination)}@(sha256:[0-9a-f]{{64}})$", pushed.stdout, re.M)
            assert digest, pushed.stdout
            again = _cli(one, "push", "org-minilm", f"oci://{destination}", "--wait", "--json")
            assert again.returncode == 0, again.stderr
            repeat = json.loads(again.stdout)
            # The same files and config make the same manifest; every blob was in the registry already.
            assert repeat["manifest_digest"] == digest.group(1)
            assert int(repeat["bytes_skipped"]) == int(repeat["bytes_total"]) > 0
            status = _cli(one, "push-status", repeat["id"])
            assert status.returncode == 0, status.stderr
            assert status.stdout == (
                f"org-minilm: succeeded to {destination} (push {repeat['id']}), manifest {digest.group(1)}\n"
            )
            listed = _cli(one, "pushes", "--model", "org-minilm").stdout.splitlines()
            assert listed[0].split() == ["ID", "MODEL", "DESTINATION", "SIZE", "STARTED", "STATUS"]
            assert len(listed) == 3 and repeat["id"] in {line.split()[0] for line in listed[1:]}
            assert all(line.split()[2] == destination and line.endswith("succeeded") for line in listed[1:])
            refused = _cli(one, "push", "org-minilm", destination)  # no oci://
            assert refused.returncode == 1 and "must be an oci:// reference" in refused.stderr

            # A second server loads it back, from the tag, with the login of oci.credentials.
            requested = _post(two, "/v1/models", {"id": destination, "source_repository": "SOURCE_REPOSITORY_OCI"})
            assert requested["id"] == destination
            # Loaded under the id with "/" as "-", like a Hugging Face repo's.
            loaded = wait_loaded(two, destination.replace("/", "-"), two)
            assert loaded["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
            assert sorted(f["path"] for f in loaded["files"]) == sorted(FILES)
            for name, data in FILES.items():
                assert _stored(two_dir / "objects", name) == data
            assert loaded["metadata"]["architecture"] == "BertModel"
            assert loaded["metadata"]["license"] == "apache-2.0"
            assert loaded["formats"] == ["MODEL_FORMAT_HUGGING_FACE"]

            # The same manifest by its digest, from the CLI: one content, so no second copy is stored.
            pinned = f"{destination.rpartition(':')[0]}@{digest.group(1)}"
            by_cli = _cli(two, "create", "base", f"oci://{pinned}", "--source-repository", "oci", "--wait")
            assert by_cli.returncode == 0, by_cli.stderr + two.output()[-3000:]
            assert f"{pinned.replace('/', '-')}: loaded" in by_cli.stdout
            assert len([p for p in (two_dir / "objects").rglob("model.safetensors")]) == 1

            # Over gRPC to the open registry; oras (its own client) reads the files by their titles.
            async def grpc_push() -> Any:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{one.grpc}") as channel:
                    stub = grpcio_pb.grpc.ModelsServiceStub(channel)
                    request = grpcio_pb.pb2.PushModelRequest(
                        id="org-minilm", destination=f"oci://{oci_registry.host}/mirror/minilm:grpc"
                    )
                    push = await stub.PushModel(request)
                    while push.status == grpcio_pb.pb2.PUSH_STATUS_PUSHING:
                        await asyncio.sleep(0.2)
                        push = await stub.GetModelPush(grpcio_pb.pb2.GetModelPushRequest(id=push.id))
                    return push

            push = asyncio.run(grpc_push())
            assert push.status == grpcio_pb.pb2.PUSH_STATUS_SUCCEEDED, push.failure_reason
            out = tmp_path / "oras"
            oras.provider.Registry(insecure=True).pull(
                target=f"{oci_registry.host}/mirror/minilm@{push.manifest_digest}", outdir=str(out)
            )
            assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == FILES

            # And requested over gRPC from the second server (grpcio stubs of the proto, the new enum value).
            mirror = f"{oci_registry.host}/mirror/minilm:grpc"

            async def grpc_create() -> Any:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{two.grpc}") as channel:
                    stub = grpcio_pb.grpc.ModelsServiceStub(channel)
                    source = grpcio_pb.pb2.SOURCE_REPOSITORY_OCI
                    return await stub.CreateModel(grpcio_pb.pb2.CreateModelRequest(id=mirror, source_repository=source))

            assert asyncio.run(grpc_create()).id == mirror
            mirrored = wait_loaded(two, mirror.replace("/", "-"), two)
            assert mirrored["revision"] == push.manifest_digest
        finally:
            one.stop()
            two.stop()
