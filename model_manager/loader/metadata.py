"""What a model is, read from the leading bytes of its files as they stream past (no weights are loaded).

- Hugging Face `config.json`: architecture, dtype, context length, quantization method.
- safetensors headers (8-byte length, then JSON): parameter count and the dominant dtype.
- GGUF headers (the file itself, or an Ollama model blob): architecture, parameter count (from the tensor
  shapes), the dominant tensor type as the quantization, context length.
- an Ollama config blob: family and file type, when no GGUF header said better.
- the model card's front matter (`README.md`): the license.
- `auto_map` in `config.json` or `tokenizer_config.json`: the model needs code of its own (requires_remote_code).

Each file is watched by a `FileWatcher` that keeps only the bytes its kind needs (a safetensors header's length
is known after 8 bytes; a GGUF header is parsed as blocks arrive and dropped once complete), up to a cap.
"""

from __future__ import annotations

import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from model_manager.core.push import ModelFacts
from model_manager.loader import jsondoc
from model_manager.proto.llmariner.models.server import v1 as pb

SMALL_FILE = 1 << 20  # config.json, README.md, an Ollama config blob: read whole up to this
HEADER_CAP = 32 << 20  # a safetensors or GGUF header larger than this is not read (vocabularies fit well within)

# ggml's tensor types, as GGUF stores them (the ones a model file is likely to hold).
GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
    12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
    20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 30: "BF16",
}  # fmt: skip
# ModelPack's precision words, as the dtypes safetensors headers name.
_DTYPES = {"fp64": "F64", "fp32": "F32", "fp16": "F16", "bf16": "BF16", "int8": "I8", "uint8": "U8", "int32": "I32"}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_LICENSE = re.compile(r"^license:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", re.M)


class _Incomplete(Exception):
    """The header goes on past the bytes read so far."""


@dataclass
class Found:
    """What the files said, merged; a GGUF header outranks a config blob, a config.json outranks nothing."""

    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    dtype: str = ""
    context_length: int = 0
    license: str = ""
    remote_code: bool = False  # config.json maps classes to the repo's own code (auto_map)
    dtypes: Counter[str] = field(default_factory=Counter)  # elements per safetensors dtype, over every shard

    def message(self, total_bytes: int, skipped: list[pb.SkippedFile] | None = None) -> pb.ModelMetadata:
        # What the weights are stored as (safetensors) says more than what config.json declares.
        dtype = self.dtypes.most_common(1)[0][0] if self.dtypes else self.dtype
        return pb.ModelMetadata(
            requires_remote_code=self.remote_code,
            skipped_files=skipped or [],
            architecture=self.architecture,
            parameter_count=self.parameters,
            quantization=self.quantization,
            dtype=dtype,
            context_length=self.context_length,
            total_bytes=total_bytes,
            license=self.license,
        )


class FileWatcher:
    """Keeps the leading bytes one file's kind needs and reads them into `found` when it has enough."""

    def __init__(self, path: str, found: Found) -> None:
        self.path = path
        self.found = found
        self.buffer = bytearray()
        self.done = False
        name = path.rsplit("/", 1)[-1]
        self.kind = (
            "config"
            if name == "config.json"
            else "tokenizer-config"
            if name == "tokenizer_config.json"
            else "card"
            if name.lower() == "readme.md"
            else "safetensors"
            if name.endswith(".safetensors")
            else "gguf"
            if name.endswith(".gguf")
            else "blob"  # an Ollama blob: a GGUF model, or a JSON config, or something else
        )

    def feed(self, block: bytes) -> None:
        if self.done:
            return
        self.buffer += block
        if self.kind == "blob" and len(self.buffer) >= 4:
            self.kind = "gguf" if self.buffer[:4] == b"GGUF" else "ollama-config" if self.buffer[:1] == b"{" else ""
            if not self.kind:
                self._stop()
                return
        if self.kind in ("safetensors", "gguf"):
            self._header()
        elif len(self.buffer) > SMALL_FILE:
            self._stop()  # not a small file after all: nothing to read in it

    def close(self) -> None:
        """The whole file has passed."""
        if self.done:
            return
        try:
            data = bytes(self.buffer)
            if self.kind == "config":
                _config(jsondoc.parse(data), self.found)
            elif self.kind == "tokenizer-config":
                self.found.remote_code = _auto_map(jsondoc.parse(data))
            elif self.kind == "card":
                _card(data.decode("utf-8", "replace"), self.found)
            elif self.kind == "ollama-config":
                _ollama_config(jsondoc.parse(data), self.found)
            elif self.kind in ("safetensors", "gguf"):
                self._header()
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
            pass  # a file that is not what its name says: it tells us nothing
        self._stop()

    def _header(self) -> None:
        try:
            if self.kind == "safetensors":
                _safetensors(bytes(self.buffer), self.found)
            else:
                _gguf(bytes(self.buffer), self.found)
        except _Incomplete:
            if len(self.buffer) > HEADER_CAP:
                self._stop()
            return
        except (ValueError, struct.error, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            pass  # not the header its name promised: it tells us nothing
        self._stop()

    def _stop(self) -> None:
        self.done = True
        self.buffer = bytearray()  # the file's bytes are not kept past what was needed


class MetadataReader:
    """One load's metadata: what each file said, kept per file (a file copied again after a failed try starts over,
    so nothing is counted twice), merged when asked. A GGUF file is a whole model of its own: a repo of several is
    several models, each described by its own header."""

    def __init__(
        self, skipped: list[pb.SkippedFile] | None = None, code_files: bool = False, described: ModelFacts | None = None
    ) -> None:
        self.described = described  # what the source says of the model: fills in what no file said
        self.files: dict[str, Found] = {}
        self.gguf: dict[str, Found] = {}
        self.skipped = skipped or []  # what the load's file selection left at the source
        self.code_files = code_files  # Python files among the stored ones

    def watch(self, path: str) -> FileWatcher:
        found = Found()
        kept = self.gguf if path.endswith(".gguf") or path.startswith("blobs/") else self.files
        kept[path] = found
        return FileWatcher(path, found)

    def message(self, total_bytes: int, gguf_file: str = "") -> pb.ModelMetadata:
        """The model's metadata; with `gguf_file`, for the model that file is (one of a repo of GGUF files)."""
        found = Found(remote_code=self.code_files)
        for said in self.files.values():  # config.json, safetensors shards, the model card
            found.remote_code = found.remote_code or said.remote_code
            found.architecture = found.architecture or said.architecture
            found.dtype = found.dtype or said.dtype
            found.context_length = found.context_length or said.context_length
            found.quantization = found.quantization or said.quantization
            found.license = found.license or said.license
            found.parameters += said.parameters
            found.dtypes.update(said.dtypes)
        headers = [self.gguf[gguf_file]] if gguf_file in self.gguf else list(self.gguf.values())
        weights = sorted((h for h in headers if h.parameters), key=lambda h: h.parameters)
        if weights:  # a GGUF header (an Ollama model blob is one): the engine's own view wins
            header = weights[-1]
            found.architecture, found.quantization = header.architecture or found.architecture, header.quantization
            found.parameters = header.parameters
            found.context_length = header.context_length or found.context_length
        for header in headers:  # an Ollama config blob fills what no header said
            found.architecture = found.architecture or header.architecture
            found.quantization = found.quantization or header.quantization
            found.license = found.license or header.license
        if self.described is not None:  # an OCI artifact's config fills what no file said
            facts = self.described
            found.architecture = found.architecture or facts.architecture
            found.parameters = found.parameters or facts.parameters
            found.quantization = found.quantization or facts.quantization.upper()
            found.license = found.license or facts.license
            if not found.dtype and not found.dtypes and facts.dtype:
                found.dtype = _DTYPES.get(facts.dtype.lower(), facts.dtype.upper())
        return found.message(total_bytes, self.skipped)


def _config(cfg: Any, found: Found) -> None:
    if not isinstance(cfg, dict):
        return
    archs = cfg.get("architectures")
    found.architecture = (
        found.architecture or (archs[0] if isinstance(archs, list) and archs else "") or str(cfg.get("model_type", ""))
    )
    if isinstance(cfg.get("torch_dtype"), str):
        found.dtype = found.dtype or cfg["torch_dtype"]
    for key in _CONTEXT_KEYS:
        if isinstance(cfg.get(key), int) and not found.context_length:
            found.context_length = cfg[key]
    found.remote_code = found.remote_code or _auto_map(cfg)
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("quant_method"), str):
        found.quantization = found.quantization or quant["quant_method"]


def _auto_map(cfg: Any) -> bool:
    """Whether a config maps classes to the repo's own code (transformers runs it with trust_remote_code)."""
    return isinstance(cfg, dict) and isinstance(cfg.get("auto_map"), (dict, list)) and bool(cfg["auto_map"])


def _card(text: str, found: Found) -> None:
    if text.startswith("---"):
        front = text[3:].split("\n---", 1)[0]
        if m := _LICENSE.search(front):
            found.license = found.license or m.group(1).strip()


def _ollama_config(cfg: Any, found: Found) -> None:
    if not isinstance(cfg, dict) or "model_format" not in cfg:
        return
    found.architecture = found.architecture or str(cfg.get("model_family", ""))
    found.quantization = found.quantization or str(cfg.get("file_type", ""))


def _safetensors(data: bytes, found: Found) -> None:
    if len(data) < 8:
        raise _Incomplete
    (n,) = struct.unpack_from("<Q", data)
    if len(data) < 8 + n:
        if 8 + n > HEADER_CAP:
            raise ValueError("header too large")
        raise _Incomplete
    header = jsondoc.parse(data[8 : 8 + n])
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(info["shape"])
        found.parameters += count
        found.dtypes[info["dtype"]] += count


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise _Incomplete
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.at + n > len(self.data):
            raise _Incomplete
        text = self.data[self.at : self.at + n].decode("utf-8", "replace")
        self.at += n
        return text


# GGUF value types: struct formats of the fixed-size ones; 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_value(c: _Cursor, kind: int) -> Any:
    if kind in _GGUF_SCALARS:
        return c.take(_GGUF_SCALARS[kind])
    if kind == 8:
        return c.string()
    if kind == 9:
        item, n = c.take("<I"), c.take("<Q")
        if item in _GGUF_SCALARS:  # skipped in one step: vocabularies hold a few hundred thousand of these
            size = struct.calcsize(_GGUF_SCALARS[item]) * n
            if c.at + size > len(c.data):
                raise _Incomplete
            c.at += size
            return None
        for _ in range(n):
            _gguf_value(c, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


def _gguf(data: bytes, found: Found) -> None:
    c = _Cursor(data)
    if c.take("<4s") != b"GGUF":
        raise ValueError("not a GGUF file")
    version = c.take("<I")
    if version < 2:
        raise ValueError(f"GGUF version {version} is not read")
    tensors, kvs = c.take("<Q"), c.take("<Q")
    values: dict[str, Any] = {}
    for _ in range(kvs):
        key = c.string()
        values[key] = _gguf_value(c, c.take("<I"))
    parameters = 0
    by_type: Counter[str] = Counter()
    for _ in range(tensors):
        c.string()
        dims = [c.take("<Q") for _ in range(c.take("<I"))]
        kind = c.take("<I")
        c.take("<Q")  # offset
        count = math.prod(dims)
        parameters += count
        by_type[GGML_TYPES.get(kind, f"type {kind}")] += count
    arch = values.get("general.architecture")
    if isinstance(arch, str):
        found.architecture = arch  # the GGUF header is the engine's own view: it wins
        context = values.get(f"{arch}.context_length")
        if isinstance(context, int):
            found.context_length = context
    found.parameters = parameters
    if by_type:
        found.quantization = by_type.most_common(1)[0][0]
    if isinstance(values.get("general.license"), str):
        found.license = found.license or values["general.license"]
