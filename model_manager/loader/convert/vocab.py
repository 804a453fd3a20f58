"""The tokenizer as llama.cpp reads it from GGUF metadata: a SentencePiece model (tokenizer.model, Llama 2 and
Mistral) or a byte-level BPE (tokenizer.json, Llama 3 and Qwen2), with special tokens and the chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gguf import BpeVocab, GGUFWriter, SentencePieceVocab, SpecialVocab, TokenType

from model_manager.loader import jsondoc
from model_manager.loader.convert.checkpoint import UnsupportedModel

# What gguf's vocabulary readers look at (config.json for bos_token_id and eos_token_id).
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "added_tokens.json", "config.json")

# llama.cpp names the pre-tokenizer of a BPE vocabulary by its split regex; these are the two this conversion's
# architectures ship (Llama 3's splits digits in threes, Qwen2's one by one). Any other is llama.cpp's "default".
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE = {_LLAMA3_SPLIT: "llama-bpe", _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}", 1): "qwen2"}


def _split_patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = []
        if node.get("type") == "Split" and isinstance(node.get("pattern"), dict):
            found.append(str(node["pattern"].get("Regex", "")))
        for value in node.values():
            found.extend(_split_patterns(value))
        return found
    if isinstance(node, list):
        return [p for item in node for p in _split_patterns(item)]
    return []


def pre_tokenizer(tokenizer_json: Path) -> str:
    config = jsondoc.parse(tokenizer_json.read_bytes())
    for pattern in _split_patterns(config.get("pre_tokenizer")):
        if pattern in _PRE:
            return _PRE[pattern]
    return "default"


def add_vocab(writer: GGUFWriter, directory: Path, vocab_size: int) -> int:
    """Write the tokenizer found in `directory`; return how many tokens it has (the embedding's rows may be more:
    those become unused padding tokens, as llama.cpp's own conversion writes them)."""
    vocab: BpeVocab | SentencePieceVocab
    if (directory / "tokenizer.model").is_file():
        vocab, model, pre = SentencePieceVocab(directory), "llama", ""
    elif (directory / "tokenizer.json").is_file():
        try:
            vocab, model, pre = BpeVocab(directory), "gpt2", pre_tokenizer(directory / "tokenizer.json")
        except FileNotFoundError as e:  # gguf says so for a tokenizer.json that is not byte-level BPE
            raise UnsupportedModel(
                "cannot convert to GGUF: tokenizer.json is not a byte-level BPE tokenizer and there is no "
                "tokenizer.model (SentencePiece)"
            ) from e
    else:
        raise UnsupportedModel("cannot convert to GGUF: the model has neither tokenizer.model nor tokenizer.json")
    tokens: list[str | bytes] = []
    scores: list[float] = []
    types: list[int] = []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))
    if len(tokens) > vocab_size:
        raise UnsupportedModel(
            f"cannot convert to GGUF: the tokenizer has {len(tokens)} tokens, more than the model's {vocab_size}"
        )
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(int(TokenType.UNUSED))
    writer.add_tokenizer_model(model)
    if pre:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)  # type: ignore[arg-type]  # gguf's BPE vocabulary yields str, SentencePiece bytes
    if model == "llama":
        writer.add_token_scores(scores)
    writer.add_token_types(types)
    SpecialVocab(directory, load_merges=model == "gpt2", n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return len(tokens)
