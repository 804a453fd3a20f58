"""What a base model's load stores, through the real loader and the hub stand-in, on a local directory and on S3:
the weights once by default, include/exclude, pickles refused unless allowed and then scanned, remote code
flagged, and request-time refusals that create nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from model_manager.core.errors import InvalidArgument
from model_manager.core.identity import Identity
from model_manager.loader.probe import SourceProbe
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from tests.helpers import HF, OBJECT_STORE, OLLAMA, OTHER_PROJECT, WHO, WORKER, Api
from tests.loader.conftest import Harness, base_path
from tests.loader.test_ollama_s3_failures import _source_bucket
from tests.loader.test_shared_content import stored
from tests.pickles import evil_pickle, state_dict_pickle, torch_zip

CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()
SAFE_BIN = torch_zip(state_dict_pickle())
EVIL_BIN = torch_zip(evil_pickle())


def duplicated_repo() -> dict[str, bytes]:
    """One model's weights seven times over, with what engines read beside them."""
    return {
        "config.json": CONFIG,
        "tokenizer.json": b'{"model": {}}',
        "README.md": b"---\nlicense: mit\n---\n# model\n",
        "model.safetensors": b"s" * 40_000,
        "pytorch_model.bin": SAFE_BIN,
        "tf_model.h5": b"t" * 40_000,
        "flax_model.msgpack": b"f" * 40_000,
        "rust_model.ot": b"r" * 40_000,
        "onnx/model.onnx": b"o" * 40_000,
        "openvino/openvino_model.bin": b"v" * 40_000,
        "original/consolidated.00.pth": SAFE_BIN,
    }


async def _model(api: Api, model_id: str) -> pb.Model:
    return await api.get(model_id)


async def test_the_default_stores_the_weights_once(any_harness: Harness, api: Api) -> None:
    files = duplicated_repo()
    repo = any_harness.hub.add("org/dup", files)
    kept = {"config.json", "tokenizer.json", "README.md", "model.safetensors"}
    selected = sum(len(files[n]) for n in kept)
    # The quota counts what is stored: the whole repo would not fit, the selection does.
    any_harness.ctx.loading = replace(any_harness.ctx.loading, max_bytes_per_tenant=selected + 1000)
    await api.request_base("org/dup")
    await any_harness.drain()
    model = await _model(api, "org-dup")
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED, model.loading_failure_reason
    path = await base_path(api, "org-dup")
    assert await stored(any_harness, path) == {name: files[name] for name in kept}
    assert {f.path for f in model.files} == kept
    assert model.metadata is not None
    skipped = {s.path: (s.size, s.reason) for s in model.metadata.skipped_files}
    assert skipped == {
        name: (len(data), f"{kind} copy of the weights; safetensors stored")
        for name, data, kind in [
            ("pytorch_model.bin", files["pytorch_model.bin"], "PyTorch"),
            ("tf_model.h5", files["tf_model.h5"], "TensorFlow"),
            ("flax_model.msgpack", files["flax_model.msgpack"], "Flax"),
            ("rust_model.ot", files["rust_model.ot"], "Rust"),
            ("onnx/model.onnx", files["onnx/model.onnx"], "ONNX"),
            ("openvino/openvino_model.bin", files["openvino/openvino_model.bin"], "OpenVINO"),
            ("original/consolidated.00.pth", files["original/consolidated.00.pth"], "original checkpoint"),
        ]
    }
    assert model.metadata.total_bytes == selected
    assert not model.metadata.requires_remote_code
    # Skipped files were never downloaded.
    assert not [r for r in repo.requests if "resolve" in r and r.endswith(("tf_model.h5", "pytorch_model.bin"))]


async def test_pickle_weights_are_refused_unless_allowed_then_scanned(any_harness: Harness, api: Api) -> None:
    any_harness.hub.add("org/pt", {"config.json": CONFIG, "pytorch_model.bin": SAFE_BIN, "tf_model.h5": b"t" * 99})
    any_harness.hub.add("org/evil", {"config.json": CONFIG, "pytorch_model.bin": EVIL_BIN})
    # Unchecked at request time (the source check is off here), the load refuses before storing anything.
    await api.request_base("org/pt")
    await any_harness.drain()
    refused = await _model(api, "org/pt")
    assert refused.loading_status == pb.ModelLoadingStatus.FAILED
    assert "pickles (pytorch_model.bin)" in refused.loading_failure_reason
    assert "allow_pickle: true" in refused.loading_failure_reason
    assert await any_harness.store.list_objects("models/") == []

    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org/pt"))
    await api.request_base("org/pt", allow_pickle=True)
    await api.request_base("org/evil", allow_pickle=True)
    await any_harness.drain()
    model = await _model(api, "org-pt")
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED, model.loading_failure_reason
    assert await stored(any_harness, await base_path(api, "org-pt")) == {
        "config.json": CONFIG,
        "pytorch_model.bin": SAFE_BIN,
    }
    evil = await _model(api, "org/evil")
    assert evil.loading_status == pb.ModelLoadingStatus.FAILED
    assert "pytorch_model.bin (archive/data.pkl): imports posix.system" in evil.loading_failure_reason
    # Nothing of the refused model stays: only the safe model's files are in the store.
    keys = [o.key for o in await any_harness.store.list_objects("models/")]
    kept = await base_path(api, "org-pt") + "/"
    assert sorted(keys) == [kept + "config.json", kept + "pytorch_model.bin"], keys


async def test_include_and_exclude_choose_the_files_and_the_copy_they_share(any_harness: Harness, api: Api) -> None:
    files = duplicated_repo()
    any_harness.hub.add("org/dup", files)
    other = Identity(WHO.tenant_id, WHO.organization_id, "third-project", WHO.role)
    chosen: dict[str, Any] = {"include": ["*.json", "tf_model.h5"], "exclude": ["tokenizer*"]}
    await api.request_base("org/dup", who=WHO, is_project_scoped=True)
    await api.request_base("org/dup", who=OTHER_PROJECT, is_project_scoped=True, **chosen)
    await api.request_base("org/dup", who=other, is_project_scoped=True, **chosen)
    await any_harness.drain()

    async def path(who: Identity) -> str:
        req = pb.GetBaseModelPathRequest(id="org-dup", project_id=who.project_id)
        return (await api.worker.get_base_model_path(WORKER, req)).path

    default, picked, same = await path(WHO), await path(OTHER_PROJECT), await path(other)
    assert default != picked  # two selections of one commit: two copies
    assert picked == same  # one selection: one copy
    assert set(await stored(any_harness, picked)) == {"config.json", "tf_model.h5"}
    assert "model.safetensors" in await stored(any_harness, default)


async def test_remote_code_is_flagged(any_harness: Harness, api: Api) -> None:
    auto_map = json.dumps({"architectures": ["X"], "auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    any_harness.hub.add("org/auto", {"config.json": auto_map, "model.safetensors": b"w" * 10})
    any_harness.hub.add("org/code", {"config.json": CONFIG, "model.safetensors": b"w" * 10, "modeling_x.py": b"pass\n"})
    any_harness.hub.add("org/plain", {"config.json": CONFIG, "model.safetensors": b"w" * 10})
    tokenizer = json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}}).encode()
    any_harness.hub.add(
        "org/tok", {"config.json": CONFIG, "model.safetensors": b"w" * 10, "tokenizer_config.json": tokenizer}
    )
    for repo in ("org/auto", "org/code", "org/plain", "org/tok"):
        await api.request_base(repo)
    await any_harness.drain()
    flags = {}
    for model_id in ("org-auto", "org-code", "org-plain", "org-tok"):
        model = await _model(api, model_id)
        assert model.metadata is not None, model.loading_failure_reason
        flags[model_id] = model.metadata.requires_remote_code
    assert flags == {"org-auto": True, "org-code": True, "org-plain": False, "org-tok": True}


async def test_a_sharded_index_is_honoured(any_harness: Harness, api: Api) -> None:
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    files = {
        "config.json": CONFIG,
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"1" * 100,
        "model-00002-of-00002.safetensors": b"2" * 100,
        "consolidated.safetensors": b"c" * 200,
    }
    any_harness.hub.add("org/sharded", files)
    await api.request_base("org/sharded")
    await any_harness.drain()
    model = await _model(api, "org-sharded")
    assert model.metadata is not None, model.loading_failure_reason
    assert set(await stored(any_harness, await base_path(api, "org-sharded"))) == set(files) - {
        "consolidated.safetensors"
    }
    assert [s.path for s in model.metadata.skipped_files] == ["consolidated.safetensors"]


# ---- refused at request time -------------------------------------------------------------------------------


@pytest.fixture
async def checked(lctx: ServiceContext, harness: Harness) -> Any:
    probe = SourceProbe(harness.config(), 5.0, hf_endpoint=harness.hub.url)
    yield ModelsService(lctx, probe)
    await probe.close()


async def test_requests_the_source_cannot_serve_as_asked_are_refused_and_create_nothing(
    checked: ModelsService, harness: Harness, api: Api
) -> None:
    harness.hub.add("org/pt", {"config.json": CONFIG, "pytorch_model.bin": SAFE_BIN})
    harness.hub.add("org/dup", duplicated_repo())
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("org/pt", {}, r"pickles \(pytorch_model\.bin\).*allow_pickle: true \(CLI --allow-pickle\)"),
        ("org/dup", {"include": ["*.gguf"]}, r"no file matches include \['\*\.gguf'\] \(of 11 files\)"),
        # OpenVINO's .bin files are raw tensors, not pickles.
        ("org/dup", {"include": ["*.bin"]}, r"include pickles \(pytorch_model\.bin\), which"),
    ]
    for model_id, extra, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            await checked.create_model(WHO, pb.CreateModelRequest(id=model_id, source_repository=HF, **extra))
    assert (await api.list(include_loading_models=True)).data == []


async def test_the_size_checked_at_request_time_is_the_selection(
    checked: ModelsService, harness: Harness, api: Api
) -> None:
    files = duplicated_repo()
    harness.hub.add("org/dup", files)
    model = await checked.create_model(WHO, pb.CreateModelRequest(id="org/dup", source_repository=HF))
    kept = ("config.json", "tokenizer.json", "README.md", "model.safetensors")
    assert model.loading_progress is not None
    assert model.loading_progress.bytes_total == sum(len(files[n]) for n in kept)
    assert model.loading_progress.files_total == len(kept)


async def test_patterns_are_checked_and_apply_to_base_models_of_repos_only(api: Api) -> None:
    with pytest.raises(InvalidArgument, match=r"include: '/etc/\*' is not a pattern"):
        await api.request_base("org/x", include=["/etc/*"])
    with pytest.raises(InvalidArgument, match="an Ollama model is stored whole"):
        await api.request_base("gemma:2b", OLLAMA, include=["*"])
    await api.loaded_base("base")
    with pytest.raises(InvalidArgument, match="apply to base models only"):
        await api.models.create_model(
            WHO,
            pb.CreateModelRequest(
                is_fine_tuned_model=True,
                base_model_id="base",
                suffix="s",
                model_file_location="s3://b/x",
                include=["*"],
            ),
        )
    assert [m.id for m in (await api.list(include_loading_models=True)).data] == ["base"]


async def test_a_model_mirrored_in_a_bucket_is_selected_the_same_way(
    harness: Harness, api: Api, s3_endpoint: str, s3_bucket: str
) -> None:
    files = duplicated_repo()
    await _source_bucket(s3_endpoint, s3_bucket, {f"mirror/my-model/{k}": v for k, v in files.items()})
    harness.raw["loader"]["downloader"] = {
        "kind": "s3",
        "s3": {"endpointUrl": s3_endpoint, "region": "us-east-1", "bucket": s3_bucket, "pathPrefix": "mirror"},
    }
    await api.request_base("my-model", OBJECT_STORE, is_project_scoped=True)
    await api.request_base("my-model", OBJECT_STORE, who=OTHER_PROJECT, is_project_scoped=True, include=["*.json"])
    await harness.drain()
    stored_default = await stored(harness, await base_path(api, "my-model", WHO.project_id))
    assert set(stored_default) == {"config.json", "tokenizer.json", "README.md", "model.safetensors"}
    picked = await base_path(api, "my-model", OTHER_PROJECT.project_id)
    assert set(await stored(harness, picked)) == {"config.json", "tokenizer.json"}
