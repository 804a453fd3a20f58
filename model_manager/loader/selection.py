"""Which files of a base model's source are stored: what engines load, with the weights once.

Many Hugging Face repos carry one model's weights several times over (safetensors beside PyTorch pickles,
TensorFlow, Flax, Rust, ONNX, OpenVINO, Meta's original checkpoint). Engines load one of them: vLLM and
transformers take safetensors when there are any. The default selection stores every file that is not weights
(configs, tokenizer, chat templates, the model card, code), plus the weights of one format: safetensors when the
repo has them, else PyTorch's; with neither, everything. A sharded index (`*.safetensors.index.json`) names the
shards that make up the weights; safetensors files beside it that it does not name (a consolidated copy) are
skipped. Training state (`training_args.bin`, optimizer and scheduler states) is not read by engines.

A request's include/exclude patterns replace the default. Repos of GGUF files, single-file requests and Ollama
models are stored as they are.

The same choice is made when a request is checked (so a selection of nothing, or of pickles not allowed, is
refused before anything is created) and when the model is loaded.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from model_manager.core.file_rule import FileRule
from model_manager.core.units import human_bytes
from model_manager.loader import jsondoc
from model_manager.loader.sources.base import RemoteFile, Source

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Directories that hold the model again in another format, whatever their files are called.
_OTHER_FORMAT_DIRS = {"onnx": "ONNX", "openvino": "OpenVINO", "original": "original checkpoint", "coreml": "Core ML"}
_SUFFIX_FORMATS = {
    ".safetensors": "safetensors",
    ".h5": "TensorFlow",
    ".msgpack": "Flax",
    ".ot": "Rust",
    ".onnx": "ONNX",
    ".onnx_data": "ONNX",
    ".tflite": "TFLite",
    ".mlmodel": "Core ML",
}
_TRAINING_STATE = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
MAX_INDEX_BYTES = 16 << 20

Reader = Callable[[RemoteFile], Awaitable[bytes]]


class SelectionError(ValueError):
    """The request cannot be served as asked (no file selected, or pickles not allowed); the message says why."""


@dataclass(frozen=True)
class Skipped:
    path: str
    size: int
    reason: str


@dataclass(frozen=True)
class Selection:
    files: list[RemoteFile]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def pickles(self) -> list[RemoteFile]:
        return [f for f in self.files if is_pickle(f.path)]

    @property
    def requires_remote_code(self) -> bool:
        """Python files among the stored ones (config.json's auto_map is read with the metadata)."""
        return any(f.path.endswith(".py") for f in self.files)


def is_pickle(path: str) -> bool:
    # OpenVINO's .bin files are raw tensors, not pickles.
    return path.endswith(PICKLE_SUFFIXES) and not path.startswith("openvino/") and "openvino_" not in path


def weights_format(path: str) -> str:
    """The format of the weights a path holds; "" for a file that is not weights (or is training state)."""
    top = path.split("/", 1)[0] if "/" in path else ""
    if top in _OTHER_FORMAT_DIRS:
        return _OTHER_FORMAT_DIRS[top]
    name = posixpath.basename(path)
    if _training_state(path):
        return ""
    for suffix, kind in _SUFFIX_FORMATS.items():
        if name.endswith(suffix) or name.endswith(suffix + ".index.json"):
            return kind
    if is_pickle(path) or name.endswith(tuple(s + ".index.json" for s in PICKLE_SUFFIXES)):
        return "PyTorch"
    return ""


def applies(files: list[RemoteFile], single_file: bool) -> bool:
    """Whether the default selection applies: not to single-file requests or repos of GGUF files."""
    return not single_file and not any(f.path.endswith(".gguf") for f in files)


async def choose(source: Source, files: list[RemoteFile], rule: FileRule) -> Selection:
    """`select` over a source's listed files, reading its index files from it."""

    async def read(f: RemoteFile) -> bytes:
        data = bytearray()
        async for chunk in source.open(f):
            data += chunk
            if len(data) > MAX_INDEX_BYTES:
                raise SelectionError(f"{source.name}: {f.path} is larger than {human_bytes(MAX_INDEX_BYTES)}")
        return bytes(data)

    return await select(files, rule, read, source.name, source.single_file)


async def select(
    files: list[RemoteFile], rule: FileRule, read: Reader, name: str, single_file: bool = False
) -> Selection:
    """The files to store of `files` (listed at the source `name`); SelectionError when the request cannot be
    served: no file selected, or pickles selected without `rule.allow_pickle`."""
    if not rule.default_selection:
        chosen = _by_patterns(files, rule)
        if not chosen.files:
            raise SelectionError(f"{name}: no file matches {rule.patterns()} (of {len(files)} files)")
    elif applies(files, single_file):
        chosen = await _default(files, read, name)
    else:
        chosen = Selection(files)
    pickles = chosen.pickles
    if pickles and not rule.allow_pickle:
        listed = ", ".join(f.path for f in pickles[:5]) + (f" and {len(pickles) - 5} more" if len(pickles) > 5 else "")
        raise SelectionError(
            f"{name}: the files to store include pickles ({listed}), which can run code when an engine loads "
            "them; ask with allow_pickle: true (CLI --allow-pickle) to store them after a scan of every pickle in "
            "them, or choose other files with include/exclude"
        )
    return chosen


def _by_patterns(files: list[RemoteFile], rule: FileRule) -> Selection:
    kept, skipped = [], []
    for f in files:
        if not rule.included(f.path):
            skipped.append(Skipped(f.path, f.size or 0, "not matched by include"))
        elif pattern := rule.excluded_by(f.path):
            skipped.append(Skipped(f.path, f.size or 0, f"matched by exclude {pattern!r}"))
        else:
            kept.append(f)
    return Selection(kept, skipped)


async def _default(files: list[RemoteFile], read: Reader, name: str) -> Selection:
    formats = {f.path: weights_format(f.path) for f in files}
    present = set(formats.values())
    chosen = next((k for k in ("safetensors", "PyTorch") if k in present), "")
    if not chosen:
        return Selection(files)  # no weights in a format engines prefer: keep them all
    kept, skipped = [], []
    for f in files:
        kind = formats[f.path]
        if kind and kind != chosen:
            skipped.append(Skipped(f.path, f.size or 0, f"{kind} copy of the weights; {chosen} stored"))
        elif not kind and _training_state(f.path):
            skipped.append(Skipped(f.path, f.size or 0, "training state, not read by engines"))
        else:
            kept.append(f)
    if chosen == "safetensors":
        kept, unlisted = await _honour_indexes(kept, read, name)
        skipped += unlisted
    return Selection(kept, skipped)


def _training_state(path: str) -> bool:
    name = posixpath.basename(path)
    return name in _TRAINING_STATE or (name.startswith("rng_state") and name.endswith(PICKLE_SUFFIXES))


async def _honour_indexes(files: list[RemoteFile], read: Reader, name: str) -> tuple[list[RemoteFile], list[Skipped]]:
    """Drop the safetensors files a sharded index in their directory does not name."""
    indexes = [f for f in files if f.path.endswith(".safetensors.index.json")]
    named: dict[str, set[str]] = {}  # directory -> the shards its indexes name
    for index in indexes:
        if (index.size or 0) > MAX_INDEX_BYTES:
            raise SelectionError(f"{name}: {index.path} is larger than {human_bytes(MAX_INDEX_BYTES)}")
        try:
            doc = jsondoc.parse_object(await read(index), index.path)
            weight_map = doc.get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"{index.path} has no weight_map of tensor names to files")
        except ValueError as e:
            raise SelectionError(f"{name}: {e}") from e
        directory = posixpath.dirname(index.path)
        named.setdefault(directory, set()).update(posixpath.join(directory, v) for v in weight_map.values())
    if not named:
        return files, []
    present = {f.path for f in files}
    for directory, shards in named.items():
        missing = sorted(shards - present)
        if missing:
            raise SelectionError(
                f"{name}: the index in {directory or 'the top directory'} names shards the source "
                f"does not have: {', '.join(missing[:5])}"
            )
    kept, skipped = [], []
    for f in files:
        directory = posixpath.dirname(f.path)
        if f.path.endswith(".safetensors") and directory in named and f.path not in named[directory]:
            skipped.append(Skipped(f.path, f.size or 0, "safetensors file its directory's index does not name"))
        else:
            kept.append(f)
    return kept, skipped
