"""Which files of a source are stored: the default (what engines load, weights once), include/exclude patterns,
sharded indexes, and the refusals (nothing selected, pickles not allowed)."""

from __future__ import annotations

import json

import pytest

from model_manager.core.errors import InvalidArgument
from model_manager.core.file_rule import DEFAULT_RULE, FileRule
from model_manager.loader.selection import Selection, SelectionError, select
from model_manager.loader.sources.base import RemoteFile

# A repo carrying its weights seven times over, as many popular ones do.
DUPLICATED = {
    "config.json": 700,
    "generation_config.json": 100,
    "tokenizer.json": 2000,
    "tokenizer_config.json": 300,
    "chat_template.jinja": 400,
    "README.md": 500,
    ".gitattributes": 50,
    "model.safetensors": 90_000,
    "pytorch_model.bin": 91_000,
    "tf_model.h5": 92_000,
    "flax_model.msgpack": 93_000,
    "rust_model.ot": 94_000,
    "onnx/model.onnx": 95_000,
    "onnx/config.json": 700,
    "openvino/openvino_model.bin": 96_000,
    "openvino/openvino_model.xml": 1000,
    "original/consolidated.00.pth": 97_000,
    "original/params.json": 200,
    "training_args.bin": 5000,
}
ENGINE_FILES = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "README.md",
    ".gitattributes",
    "model.safetensors",
}


def _files(sizes: dict[str, int]) -> list[RemoteFile]:
    return [RemoteFile(path, size) for path, size in sizes.items()]


async def _select(
    sizes: dict[str, int],
    rule: FileRule = DEFAULT_RULE,
    docs: dict[str, object] | None = None,
    single_file: bool = False,
) -> Selection:
    async def read(f: RemoteFile) -> bytes:
        return json.dumps((docs or {})[f.path]).encode()

    return await select(_files(sizes), rule, read, "Hugging Face repo org/m", single_file)


async def test_the_default_keeps_what_engines_load_and_the_weights_once() -> None:
    chosen = await _select(DUPLICATED)
    assert {f.path for f in chosen.files} == ENGINE_FILES
    reasons = {s.path: s.reason for s in chosen.skipped}
    assert set(reasons) == set(DUPLICATED) - ENGINE_FILES
    assert reasons["pytorch_model.bin"] == "PyTorch copy of the weights; safetensors stored"
    assert reasons["onnx/config.json"] == "ONNX copy of the weights; safetensors stored"
    assert reasons["original/consolidated.00.pth"] == "original checkpoint copy of the weights; safetensors stored"
    assert reasons["training_args.bin"] == "training state, not read by engines"
    assert {s.size for s in chosen.skipped if s.path == "tf_model.h5"} == {92_000}
    assert chosen.pickles == []


async def test_without_safetensors_the_pytorch_weights_are_chosen_and_need_allow_pickle() -> None:
    sizes = {k: v for k, v in DUPLICATED.items() if k != "model.safetensors"}
    with pytest.raises(SelectionError, match=r"include pickles \(pytorch_model\.bin\).*allow_pickle: true"):
        await _select(sizes)
    chosen = await _select(sizes, FileRule(allow_pickle=True))
    assert {f.path for f in chosen.pickles} == {"pytorch_model.bin"}
    assert "tf_model.h5" in {s.path for s in chosen.skipped}


async def test_a_repo_of_other_formats_only_is_kept_whole() -> None:
    sizes = {"config.json": 10, "tf_model.h5": 100, "flax_model.msgpack": 100}
    chosen = await _select(sizes)
    assert {f.path for f in chosen.files} == set(sizes) and chosen.skipped == []


async def test_gguf_repos_and_single_file_requests_are_stored_as_they_are() -> None:
    sizes = {"a.Q4_0.gguf": 10, "a.Q8_0.gguf": 20, "pytorch_model.bin": 5, "model.safetensors": 5}
    with pytest.raises(SelectionError, match="pickles"):  # still no pickle without asking
        await _select(sizes)
    assert len((await _select(sizes, FileRule(allow_pickle=True))).files) == 4
    single = await _select({"model.safetensors": 1, "tf_model.h5": 1}, single_file=True)
    assert len(single.files) == 2


async def test_a_sharded_index_names_the_shards() -> None:
    sizes = {
        "config.json": 1,
        "model.safetensors.index.json": 1,
        "model-00001-of-00002.safetensors": 10,
        "model-00002-of-00002.safetensors": 10,
        "consolidated.safetensors": 20,
        "vae/diffusion_pytorch_model.safetensors": 5,  # another directory: its own (absent) index
    }
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    chosen = await _select(sizes, docs={"model.safetensors.index.json": index})
    assert {s.path for s in chosen.skipped} == {"consolidated.safetensors"}
    assert "index does not name" in chosen.skipped[0].reason
    assert "vae/diffusion_pytorch_model.safetensors" in {f.path for f in chosen.files}

    index["weight_map"]["c"] = "model-00003-of-00003.safetensors"
    with pytest.raises(SelectionError, match=r"names shards the source does not have: model-00003-of-00003"):
        await _select(sizes, docs={"model.safetensors.index.json": index})
    with pytest.raises(SelectionError, match="no weight_map"):
        await _select(sizes, docs={"model.safetensors.index.json": {"weight_map": [1]}})


async def test_include_and_exclude_replace_the_default() -> None:
    rule = FileRule(include=("*.json", "tf_model.h5", "onnx/"), exclude=("tokenizer*", "onnx/config.json"))
    chosen = await _select(DUPLICATED, rule)
    assert {f.path for f in chosen.files} == {
        "config.json",
        "generation_config.json",
        "original/params.json",  # "*" crosses "/", as in huggingface_hub's patterns
        "tf_model.h5",
        "onnx/model.onnx",
    }
    reasons = {s.path: s.reason for s in chosen.skipped}
    assert reasons["tokenizer_config.json"] == "matched by exclude 'tokenizer*'"
    assert reasons["model.safetensors"] == "not matched by include"
    only_exclude = await _select(DUPLICATED, FileRule(exclude=("*.bin", "*.pth"), allow_pickle=False))
    assert "tf_model.h5" in {f.path for f in only_exclude.files}  # no default selection once patterns are given


async def test_a_selection_of_nothing_is_refused_naming_the_patterns() -> None:
    with pytest.raises(
        SelectionError, match=r"no file matches include \['\*\.gguf'\], exclude \['x'\] \(of 19 files\)"
    ):
        await _select(DUPLICATED, FileRule(include=("*.gguf",), exclude=("x",)))


async def test_python_files_mark_remote_code() -> None:
    assert not (await _select(DUPLICATED)).requires_remote_code
    assert (await _select({**DUPLICATED, "modeling_custom.py": 10})).requires_remote_code


def test_patterns_are_checked() -> None:
    for bad in ("", "/abs/*", "x" * 513, "a\x00b"):
        with pytest.raises(InvalidArgument, match="is not a pattern"):
            FileRule.checked([bad], [], False)
    with pytest.raises(InvalidArgument, match="at most 64 patterns"):
        FileRule.checked([], ["*"] * 65, False)
    rule = FileRule.checked(["*.json"], ["a/"], True)
    assert FileRule.decode(rule.encode()) == rule
    assert DEFAULT_RULE.encode() == "" and FileRule.decode("") == DEFAULT_RULE
