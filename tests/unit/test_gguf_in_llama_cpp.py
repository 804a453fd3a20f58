"""The converted file in llama.cpp itself (llama-cpp-python, which compiles llama.cpp for minutes, so it is not in
the default dev install: `make test-engine` installs it and runs this). Skipped when it is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.checkpoints import Checkpoint
from tests.unit.test_gguf_conversion import convert

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow


def _logits(path: Path, tokens: list[int]) -> np.ndarray[Any, Any]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False)
    llm.eval(tokens)
    return np.asarray(llm.scores[: len(tokens)], dtype=np.float32)


async def test_llama_cpp_loads_tokenizes_and_evaluates_every_type_alike(tmp_path: Path) -> None:
    ck = Checkpoint(hidden=128, heads=4, kv_heads=2, feed_forward=256)
    text = "The quick brown fox jumps over the lazy dog"
    expected_ids = Tokenizer.from_str(ck.files()["tokenizer.json"].decode()).encode(text).ids
    results = {}
    for gguf_type in ("f32", "bf16", "q8_0"):
        await convert(tmp_path / gguf_type, ck, gguf_type)
        path = next((tmp_path / gguf_type).rglob("*.gguf"))
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False)
        assert llm.tokenize(text.encode(), add_bos=False) == expected_ids  # vocabulary, merges and pre-tokenizer
        results[gguf_type] = _logits(path, expected_ids)
        assert np.isfinite(results[gguf_type]).all()
    # bf16 weights stored as bf16 or f32 compute the same; q8_0 stays close to them.
    np.testing.assert_allclose(results["bf16"], results["f32"], atol=2e-2)
    assert np.corrcoef(results["q8_0"].ravel(), results["f32"].ravel())[0, 1] > 0.99
