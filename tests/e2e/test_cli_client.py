"""`model-manager models ...` as a person or a script uses it: the console script against a running server with
auth on, a model loaded by the in-process loader from the hub stand-in, a load that fails."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import gguf

from tests.checkpoints import Checkpoint
from tests.e2e.conftest import Proc, embedded_config, start
from tests.fakes.hub import Hub
from tests.fakes.threaded import serve_in_thread
from tests.loader.test_file_selection import CONFIG, EVIL_BIN, duplicated_repo


def _cli(proc: Proc, *args: str, key: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_MANAGER_URL": f"http://127.0.0.1:{proc.http}", "MODEL_MANAGER_API_KEY": key}
    command = [sys.executable, "-m", "model_manager", "models", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _key(config: Path, role: str) -> str:
    command = [sys.executable, "-m", "model_manager", "keys", "create", "--config", str(config), "--role", role]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def _patch(proc: Proc, key: str, model_id: str, body: Any) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{proc.http}/v1/models/{model_id}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return int(r.status)


def test_create_wait_list_update_and_delete_from_the_terminal(tmp_path: Path) -> None:
    hub = Hub()
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 8192}
    hub.add("org/model", files)
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path, loader=True), "auth": {"enable": True}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            config_file = next(tmp_path.glob("config-all-*.yaml"))
            admin = _key(config_file, "admin")

            created = _cli(
                proc, "create", "base", "org/model", "--source-repository", "hugging-face", "--wait", key=admin
            )
            assert created.returncode == 0, created.stderr
            assert "org/model" in created.stdout
            assert re.search(r"^org-model: loaded, 2\.0 MiB in 2 files after \d+ s$", created.stdout, re.M)

            listed = _cli(proc, "list", key=admin)
            assert listed.returncode == 0, listed.stderr
            header, row = listed.stdout.splitlines()
            assert header.split() == ["ID", "ACTIVATION", "FORMATS", "SIZE", "AGE", "STATUS"]
            assert row.split()[:4] == ["org-model", "inactive", "hugging-face", "2.0"] and row.endswith("succeeded")
            described = _cli(proc, "get", "org-model", key=admin)
            assert re.search(r"^ARCHITECTURE +bert$", described.stdout, re.M), described.stdout  # config.json
            by_architecture = _cli(proc, "list", "--architecture", "BERT", key=admin).stdout.splitlines()
            assert [line.split()[0] for line in by_architecture[1:]] == ["org-model"]
            assert len(_cli(proc, "list", "--format", "gguf", key=admin).stdout.splitlines()) == 1  # the header
            as_json = json.loads(_cli(proc, "list", "--json", key=admin).stdout)
            assert [m["id"] for m in as_json["data"]] == ["org-model"]

            updated = _cli(proc, "update", "org-model", "--replicas", "3", "--disable-on-demand-allocation", key=admin)
            assert updated.returncode == 0, updated.stderr
            model = json.loads(_cli(proc, "get", "org-model", "--json", key=admin).stdout)
            assert model["config"]["runtime_config"]["replicas"] == 3
            assert model["config"]["cluster_allocation_policy"]["enable_on_demand_allocation"] is False
            # What llmariner's own CLI sends for that flag: the path without "config.", accepted here.
            llma = {
                "model": {"config": {"cluster_allocation_policy": {"enable_on_demand_allocation": True}}},
                "update_mask": "cluster_allocation_policy.enable_on_demand_allocation",
            }
            assert _patch(proc, admin, "org-model", llma) == 200

            for verb in ("activate", "deactivate", "delete"):
                done = _cli(proc, verb, "org-model", key=admin)
                assert done.returncode == 0 and done.stdout == f"org-model: {verb}d\n", done.stderr

            # A load that fails: exit 1 with the reason, on stderr.
            failed = _cli(
                proc, "create", "base", "org/missing", "--source-repository", "hugging-face", "--wait", key=admin
            )
            assert failed.returncode == 1
            assert "org-missing: loading failed" in failed.stderr or "org/missing: loading failed" in failed.stderr
            assert "not found" in failed.stderr
            shown = _cli(proc, "get", "org/missing", key=admin)
            assert shown.returncode == 0 and "FAILED ATTEMPTS" in shown.stdout and "not found" in shown.stdout

            # The repo appears (it was private, or not pushed yet): retry, no delete and re-create.
            hub.add("org/missing", files)
            retried = _cli(proc, "retry", "org/missing", "--wait", key=admin)
            assert retried.returncode == 0, retried.stderr
            assert retried.stdout.startswith("org/missing: requested")
            assert re.search(r"^org-missing: loaded, 2\.0 MiB in 2 files after \d+ s$", retried.stdout, re.M)
            again = _cli(proc, "retry", "org-missing", key=admin)
            assert again.returncode == 1 and "only a failed model can be retried" in again.stderr

            # Refusals and bad usage.
            missing = _cli(proc, "get", "nope", key=admin)
            assert missing.returncode == 1 and 'model "nope" not found (HTTP 404)' in missing.stderr
            no_key = _cli(proc, "list")
            assert no_key.returncode == 1 and "HTTP 401" in no_key.stderr
            assert _cli(proc, "update", "org-model", key=admin).returncode == 2
            assert _cli(proc, "create", "base", "x", "--source-repository", "ftp").returncode == 2
        finally:
            proc.stop()


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "MODEL_MANAGER_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "model_manager", "models", "list"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 1 and "cannot reach http://127.0.0.1:9" in done.stderr


def test_a_request_the_source_cannot_serve_is_refused_at_create_time(tmp_path: Path) -> None:
    hub = Hub()
    hub.add("org/model", {"config.json": b"{}", "model.safetensors": b"w" * 4096})
    hub.add("org/gated", {"config.json": b"{}"}, gated=True, token="t")
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path), "loading": {"checkSource": True}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            missing = _cli(proc, "create", "base", "org/none", "--source-repository", "hugging-face")
            assert missing.returncode == 1
            assert "Hugging Face repo org/none not found" in missing.stderr and "(HTTP 404)" in missing.stderr
            gated = _cli(proc, "create", "base", "org/gated", "--source-repository", "hugging-face")
            assert gated.returncode == 1 and "is gated" in gated.stderr and "(HTTP 403)" in gated.stderr
            made = _cli(proc, "create", "base", "org/model", "--source-repository", "hugging-face", "--json")
            assert made.returncode == 0, made.stderr
            assert json.loads(made.stdout)["loading_progress"] == {
                "bytes_done": 0,
                "bytes_total": 4098,
                "files_done": 0,
                "files_total": 2,
            }
            listed = json.loads(_cli(proc, "list", "--json").stdout)
            assert [m["id"] for m in listed["data"]] == ["org/model"]
        finally:
            proc.stop()


def test_one_request_converts_to_gguf_from_the_terminal(tmp_path: Path) -> None:
    """The manual llama.cpp recipe as one command: a Llama checkpoint requested with --gguf ends as two models, the
    GGUF beside the source files where GetBaseModelPath says; a checkpoint that cannot convert is refused at once."""
    hub = Hub()
    hub.add("org/tiny", Checkpoint().files())
    hub.add("org/bert", Checkpoint(extra_config={"architectures": ["BertModel"]}).files())
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path, loader=True), "loading": {"checkSource": True}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            refused = _cli(proc, "create", "base", "org/bert", "--source-repository", "hugging-face", "--gguf", "q8_0")
            assert refused.returncode == 1
            assert "architecture 'BertModel'" in refused.stderr and "(HTTP 400)" in refused.stderr
            bad_type = _cli(proc, "create", "base", "org/tiny", "--source-repository", "hugging-face", "--gguf", "q3")
            assert bad_type.returncode == 2  # argparse names the choices

            made = _cli(
                proc, "create", "base", "org/tiny", "--source-repository", "hugging-face", "--gguf", "q8_0", "--wait"
            )
            assert made.returncode == 0, made.stderr
            listed = _cli(proc, "list", "--format", "gguf").stdout.splitlines()
            assert [line.split()[0] for line in listed[1:]] == ["org-tiny-q8_0"]
            model = json.loads(_cli(proc, "get", "org-tiny-q8_0", "--json").stdout)
            assert model["metadata"]["quantization"] == "Q8_0" and model["formats"] == ["MODEL_FORMAT_GGUF"]
            [stored] = list((tmp_path / "objects").rglob("org-tiny-q8_0.gguf"))
            assert model["files"][0]["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
            reader = gguf.GGUFReader(stored)
            assert reader.fields["general.architecture"].contents() == "llama"
            assert (stored.parent / "model.safetensors").is_file()  # next to the source files
            assert json.loads(_cli(proc, "get", "org-tiny", "--json").stdout)["loading_status"].endswith("SUCCEEDED")
        finally:
            proc.stop()


def test_the_files_stored_are_chosen_from_the_terminal(tmp_path: Path) -> None:
    """The default selection shown by `models get`, --include/--exclude, and pickles: refused at create time
    without --allow-pickle, scanned with it."""
    hub = Hub()
    hub.add("org/dup", duplicated_repo())
    hub.add("org/dup2", duplicated_repo())
    hub.add("org/evil", {"config.json": CONFIG, "pytorch_model.bin": EVIL_BIN})
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path, loader=True), "loading": {"checkSource": True}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            made = _cli(proc, "create", "base", "org/dup", "--source-repository", "hugging-face", "--wait")
            assert made.returncode == 0, made.stderr
            shown = _cli(proc, "get", "org-dup").stdout
            assert "NOT STORED (7 files, " in shown, shown
            assert re.search(r"tf_model\.h5\s+39\.1 KiB\s+TensorFlow copy of the weights; safetensors stored", shown)
            [weights] = list((tmp_path / "objects").rglob("model.safetensors"))
            assert sorted(p.name for p in weights.parent.iterdir()) == [
                "README.md",
                "config.json",
                "model.safetensors",
                "tokenizer.json",
            ]

            chosen = _cli(
                proc,
                *("create", "base", "org/dup2", "--source-repository", "hugging-face", "--wait"),
                *("--include", "*.json", "--include", "tf_model.h5", "--exclude", "tokenizer*"),
            )
            assert chosen.returncode == 0, chosen.stderr
            model = json.loads(_cli(proc, "get", "org-dup2", "--json").stdout)
            assert sorted(f["path"] for f in model["files"]) == ["config.json", "tf_model.h5"]

            refused = _cli(proc, "create", "base", "org/evil", "--source-repository", "hugging-face")
            assert refused.returncode == 1 and "(HTTP 400)" in refused.stderr
            assert "pickles (pytorch_model.bin)" in refused.stderr and "--allow-pickle" in refused.stderr
            scanned = _cli(
                proc, "create", "base", "org/evil", "--source-repository", "hugging-face", "--allow-pickle", "--wait"
            )
            assert scanned.returncode == 1
            assert "imports posix.system" in scanned.stderr, scanned.stderr
            assert [p for p in (tmp_path / "objects").rglob("*") if "evil" in p.as_posix() and p.is_file()] == []
        finally:
            proc.stop()


def test_an_engine_downloads_a_stored_model_with_hf_endpoint_and_hf_token(tmp_path: Path) -> None:
    """What an engine's pod does: `hf download` (huggingface_hub's own command) with HF_ENDPOINT=<server>/hf and
    HF_TOKEN=<a reader key>, against `model-manager run` with auth on."""
    hub = Hub()
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 8192}
    hub.add("org/model", files)
    with serve_in_thread(hub.app()) as hub_url:
        config = {**embedded_config(tmp_path, loader=True), "auth": {"enable": True}}
        proc = start(config, tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            config_file = next(tmp_path.glob("config-all-*.yaml"))
            admin, reader = _key(config_file, "admin"), _key(config_file, "reader")
            made = _cli(proc, "create", "base", "org/model", "--source-repository", "hugging-face", "--wait", key=admin)
            assert made.returncode == 0, made.stderr
            hf = Path(sys.executable).with_name("hf")
            env = {
                **os.environ,
                "HF_ENDPOINT": f"http://127.0.0.1:{proc.http}/hf",
                "HF_HOME": str(tmp_path / "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
            out = tmp_path / "engine"
            command = [str(hf), "download", "org/model", "--local-dir", str(out)]
            refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
            assert refused.returncode != 0 and not out.joinpath("model.safetensors").exists()
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**env, "HF_TOKEN": reader})
            assert done.returncode == 0, done.stderr
            assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
        finally:
            proc.stop()


def _aliases(proc: Proc, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_MANAGER_URL": f"http://127.0.0.1:{proc.http}"}
    command = [sys.executable, "-m", "model_manager", "aliases", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_aliases_from_the_terminal(tmp_path: Path) -> None:
    hub = Hub()
    for name in ("org/a", "org/b"):
        hub.add(name, {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"w" * 4096})
    with serve_in_thread(hub.app()) as hub_url:
        proc = start(embedded_config(tmp_path, loader=True), tmp_path, env={"HF_ENDPOINT": hub_url})
        try:
            for name in ("org/a", "org/b"):
                made = _cli(proc, "create", "base", name, "--source-repository", "hugging-face", "--wait")
                assert made.returncode == 0, made.stderr
            assert _aliases(proc, "set", "chat", "org-a").stdout == "chat -> org-a (new)\n"
            assert _aliases(proc, "set", "chat", "org-b").stdout == "chat -> org-b (was org-a)\n"
            shown = _aliases(proc, "get", "chat").stdout
            assert shown.startswith("chat -> org-b  (tenant)\n") and "(created) -> org-a" in shown
            assert "org-a -> org-b" in shown
            assert _aliases(proc, "list").stdout.splitlines()[1].split() == ["chat", "org-b", "tenant"]
            model = json.loads(_cli(proc, "get", "chat", "--json").stdout)
            assert (model["id"], model["aliases"]) == ("org-b", ["chat"])
            assert "ALIASES         chat\n" in _cli(proc, "get", "org-b").stdout
            refused = _cli(proc, "delete", "org-b")
            assert refused.returncode == 1 and 'named by the alias "chat"' in refused.stderr
            bad = _aliases(proc, "set", "a:b", "org-a")
            assert bad.returncode == 1 and "is not an alias name" in bad.stderr and "(HTTP 400)" in bad.stderr
            assert _aliases(proc, "delete", "chat").stdout == "chat: deleted\n"
            gone = _aliases(proc, "get", "chat")
            assert gone.returncode == 1 and 'alias "chat" not found' in gone.stderr
        finally:
            proc.stop()
