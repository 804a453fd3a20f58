"""Loading from Hugging Face (a hub stand-in over real HTTP, real model files) into the object store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from model_manager.objectstore.base import ObjectStore
from model_manager.proto.llmariner.models.server import v1 as pb
from tests.helpers import WHO, WORKER, Api, hf_prefix
from tests.loader.conftest import Harness, minilm_files, tiny_gguf
from tests.objects import get

PREFIX = "models/base-models"


async def _stored(store: ObjectStore, prefix: str) -> dict[str, bytes]:
    return {o.key[len(prefix) + 1 :]: await get(store, o.key) for o in await store.list_objects(prefix + "/")}


async def test_whole_repo_lands_byte_exact_and_the_model_is_loaded(harness: Harness, api: Api) -> None:
    files = minilm_files()
    repo = harness.hub.add("sentence-transformers/all-MiniLM-L6-v2", files)
    await api.request_base("sentence-transformers/all-MiniLM-L6-v2")
    await harness.drain()

    prefix = hf_prefix("sentence-transformers/all-MiniLM-L6-v2")
    assert await _stored(harness.store, prefix) == files  # byte for byte, nothing extra
    model = await api.get("sentence-transformers-all-MiniLM-L6-v2", loading=False)
    assert model.loading_status == pb.ModelLoadingStatus.SUCCEEDED
    assert model.formats == [pb.ModelFormat.HUGGING_FACE]
    assert model.revision == repo.commit
    assert {f.path: (f.size, f.sha256) for f in model.files} == {
        p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()
    }
    # The requested row (org/name form) is gone, and the repo is recorded so it is not loaded twice.
    listed = await api.list(include_loading_models=True)
    assert [m.id for m in listed.data] == ["sentence-transformers-all-MiniLM-L6-v2"]
    await api.worker.get_hf_model_repo(WORKER, pb.GetHfModelRepoRequest(name="sentence-transformers/all-MiniLM-L6-v2"))
    path = await api.worker.get_base_model_path(
        WORKER, pb.GetBaseModelPathRequest(id="sentence-transformers-all-MiniLM-L6-v2")
    )
    assert path.path == prefix


async def test_pinned_revision_is_loaded_and_recorded(harness: Harness, api: Api) -> None:
    repo = harness.hub.add("org/pinned", {"config.json": b"{}"}, commit="c0ffee" * 6 + "c0ff")
    await api.request_base(f"org/pinned@{repo.commit}")
    await harness.drain()
    assert (await api.get("org-pinned", loading=False)).revision == repo.commit
    assert all(repo.commit in r for r in repo.requests if "/resolve/" in r or "/tree/" in r)


async def test_single_gguf_file(harness: Harness, api: Api, tmp_path: Path) -> None:
    q4 = tiny_gguf(tmp_path, "model-q4.gguf")
    harness.hub.add(
        "org/llm-GGUF",
        {"model-q4.gguf": q4, "model-q8.gguf": tiny_gguf(tmp_path, "q8.gguf", 2), "README.md": b"# readme"},
    )
    await api.request_base("org/llm-GGUF/model-q4.gguf")
    await harness.drain()
    model = await api.get("org-llm-GGUF-model-q4.gguf", loading=False)
    assert model.formats == [pb.ModelFormat.GGUF]
    prefix = hf_prefix("org/llm-GGUF/model-q4.gguf")
    assert await _stored(harness.store, prefix) == {"model-q4.gguf": q4}
    path = await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id=model.id))
    assert path.gguf_model_path == f"{prefix}/model-q4.gguf"


async def test_several_gguf_files_become_one_model_each(harness: Harness, api: Api, tmp_path: Path) -> None:
    a, b = tiny_gguf(tmp_path, "a.gguf", 1), tiny_gguf(tmp_path, "b.gguf", 2)
    harness.hub.add("org/multi", {"small.gguf": a, "large.gguf": b})
    await api.request_base("org/multi")
    await harness.drain()
    ids = [m.id for m in (await api.list(include_loading_models=True)).data]
    assert ids == ["org-multi-large", "org-multi-small"]
    small = await api.worker.get_base_model_path(WORKER, pb.GetBaseModelPathRequest(id="org-multi-small"))
    assert (small.path, small.gguf_model_path, small.formats) == (
        f"{hf_prefix('org/multi')}/small",
        f"{hf_prefix('org/multi')}/small.gguf",
        [pb.ModelFormat.GGUF],
    )
    assert await get(harness.store, small.gguf_model_path) == a


async def test_triton_and_adapter_formats(harness: Harness, api: Api) -> None:
    harness.hub.add(
        "org/trt", {"repo/llama/tensorrt_llm/config.pbtxt": b"name: 'x'", "repo/llama/1/rank0.engine": b"e"}
    )
    harness.hub.add("org/lora", {"adapter_config.json": b"{}", "adapter_model.safetensors": b"w" * 100})
    await api.request_base("org/trt")
    await api.request_base("org/lora")
    await harness.drain()
    assert (await api.get("org-trt")).formats == [pb.ModelFormat.NVIDIA_TRITON]
    assert (await api.get("org-lora")).formats == [pb.ModelFormat.HUGGING_FACE]


async def test_missing_repo_fails_with_a_reason(harness: Harness, api: Api) -> None:
    await api.request_base("org/does-not-exist")
    await harness.drain()
    model = await api.get("org/does-not-exist")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert "not found" in model.loading_failure_reason and "org/does-not-exist" in model.loading_failure_reason


async def test_gated_repo_fails_saying_so(harness: Harness, api: Api) -> None:
    harness.hub.add("org/gated", {"config.json": b"{}"}, gated=True, token="sekret")
    await api.request_base("org/gated")
    await harness.drain()
    model = await api.get("org/gated")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert "gated" in model.loading_failure_reason and "HF_TOKEN" in model.loading_failure_reason


async def test_gated_repo_loads_with_a_token(harness: Harness, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "sekret")
    harness.hub.add("org/gated", {"config.json": b"{}"}, gated=True, token="sekret")
    await api.request_base("org/gated")
    await harness.drain()
    assert (await api.get("org-gated")).loading_status == pb.ModelLoadingStatus.SUCCEEDED


async def test_repo_without_a_model_format_fails(harness: Harness, api: Api) -> None:
    harness.hub.add("org/docs", {"README.md": b"nothing to serve"})
    await api.request_base("org/docs")
    await harness.drain()
    model = await api.get("org/docs")
    assert "no model format found" in model.loading_failure_reason
    assert await harness.store.list_objects(PREFIX) == []


async def test_already_loaded_repo_is_skipped(harness: Harness, api: Api) -> None:
    repo = harness.hub.add("org/once", {"config.json": b"{}"})
    await api.request_base("org/once")
    await harness.drain()
    downloads = len([r for r in repo.requests if "/resolve/" in r])
    await api.models.delete_model(WHO, pb.DeleteModelRequest(id="org-once"))
    # Deleting dropped the repo record, so the next request loads again; a recorded repo is skipped.
    await api.request_base("org/once")
    await harness.drain()
    assert len([r for r in repo.requests if "/resolve/" in r]) == downloads * 2
    await api.worker.create_hf_model_repo(WORKER, pb.CreateHfModelRepoRequest(name="org/twice"))
    harness.hub.add("org/twice", {"config.json": b"{}"})
    await api.request_base("org/twice")
    await harness.drain()
    assert harness.hub.repos["org/twice"].requests == []


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"filesPerModel": 1}, "has 2 files, more than limits.filesPerModel (1)"),
        ({"bytesPerModel": 1000}, "bytes, more than limits.bytesPerModel (1000)"),
    ],
)
async def test_models_over_the_limits_fail_before_anything_is_written(
    harness: Harness, api: Api, limits: dict[str, int], message: str
) -> None:
    harness.hub.add("org/huge", {"config.json": b"{}", "model.safetensors": b"w" * 4096})
    harness.raw = {**harness.raw, "limits": limits}
    await api.request_base("org/huge")
    await harness.drain()
    model = await api.get("org/huge")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert message in model.loading_failure_reason
    assert await harness.store.list_objects("models/") == []


@pytest.mark.parametrize("name", ["../escape.dat", "sub/../../escape.dat", "a\\b.dat", "bad\x01name.dat"])
async def test_hostile_file_names_from_a_source_fail_the_model_and_write_nothing(
    harness: Harness, api: Api, tmp_path: Path, name: str
) -> None:
    harness.hub.add("org/hostile", {"config.json": b"{}", name: b"x" * 100})
    await api.request_base("org/hostile")
    await harness.drain()
    model = await api.get("org/hostile")
    assert model.loading_status == pb.ModelLoadingStatus.FAILED
    assert "invalid object key" in model.loading_failure_reason
    assert await harness.store.list_objects("") == []
    assert not list(tmp_path.parent.rglob("escape.dat"))
