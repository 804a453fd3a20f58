"""The CNCF ModelPack v1 artifact: how a model's files sit in a registry, and how we read one back.

One OCI image manifest with `artifactType` application/vnd.cncf.model.manifest.v1+json; a config blob describing
the model; one layer per file, raw (not tarred), its media type saying what the file is (weights, the configs that
go with them, docs, code) and its path in `org.cncf.model.filepath` (also in `org.opencontainers.image.title`,
which plain OCI clients such as oras name the file by). A layer's digest is the file's sha256: the one the loader
computed when it stored the file, so a push hashes nothing again.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from model_manager.core.push import ModelFacts
from model_manager.oci.client import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"

_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".onnx", ".h5", ".msgpack", ".pb")
_DOCS = (".md", ".txt", ".rst", ".pdf")
_CODE = (".py", ".sh", ".ipynb", ".js", ".cu", ".cpp", ".c", ".h")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# ModelPack's precision words for the dtypes the loader reads off safetensors headers and config.json.
_PRECISION = {"F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16", "I8": "int8", "U8": "uint8", "I32": "int32"}


def media_type(path: str) -> str:
    name = posixpath.basename(path).lower()
    if path.startswith("blobs/sha256-") or name.endswith(_WEIGHTS):  # an Ollama model's blobs are its weights
        return WEIGHT
    if name.endswith(_CODE):
        return CODE
    if name.endswith(_DOCS) or name.startswith(("readme", "license", "licence", "notice", "usage")):
        return DOC
    return WEIGHT_CONFIG  # config.json, tokenizer files, chat templates, vocabularies


@dataclass(frozen=True)
class Layer:
    path: str
    size: int
    digest: str  # sha256:<hex>
    media_type: str = ""

    def descriptor(self) -> dict[str, object]:
        return {
            "mediaType": self.media_type or media_type(self.path),
            "digest": self.digest,
            "size": self.size,
            "annotations": {FILEPATH: self.path, TITLE: self.path},
        }


def param_size(count: int) -> str:
    """ModelPack's paramSize: a count with one decimal at most and a scale letter ("22.7M", "8B")."""
    for scale, letter in ((10**15, "Q"), (10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + letter
    return str(count)


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def config_blob(facts: ModelFacts, layers: Sequence[Layer]) -> bytes:
    descriptor: dict[str, object] = {"name": facts.name}
    if facts.created_at:
        descriptor["createdAt"] = facts.created_at
    if facts.revision:
        descriptor["revision"] = facts.revision
    if facts.license:
        descriptor["licenses"] = [facts.license]
    config: dict[str, object] = {}
    if facts.architecture:
        config["architecture"] = facts.architecture
    if facts.format:
        config["format"] = facts.format
    if facts.parameters:
        config["paramSize"] = param_size(facts.parameters)
    if facts.dtype:
        config["precision"] = _PRECISION.get(facts.dtype.upper(), facts.dtype.lower())
    if facts.quantization:
        config["quantization"] = facts.quantization.lower()
    modelfs = {"type": "layers", "diff_ids": [layer.digest for layer in layers]}
    return _json({"descriptor": descriptor, "config": config, "modelfs": modelfs})


def manifest(config: bytes, config_digest: str, layers: Sequence[Layer], annotations: dict[str, str]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [layer.descriptor() for layer in layers],
        "annotations": annotations,
    }
    return _json(doc)


# ---- reading an artifact back -----------------------------------------------------------------------------


class NotAModel(ValueError):
    """The manifest is not one this reader can take files from; the message says why."""


class UnnamedLayer(NotAModel):
    """A layer names no file: an image, or a manifest as Ollama's registry writes them."""


@dataclass(frozen=True)
class Artifact:
    config_digest: str
    config_size: int
    config_media_type: str
    layers: tuple[Layer, ...]


def _safe_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts) and len(path) < 1024


def read_manifest(body: bytes, media_type: str) -> Artifact:
    """The files an image manifest holds: each layer's path from `org.cncf.model.filepath`, else its title.
    Refuses an index (a manifest must be named), unsafe paths, duplicate paths and digests not sha256."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise NotAModel("the manifest is not JSON") from e
    kind = doc.get("mediaType") or media_type if isinstance(doc, dict) else ""
    if kind == OCI_INDEX or (isinstance(doc, dict) and "manifests" in doc):
        raise NotAModel("it is an index of several manifests: name one of them by its digest")
    if kind not in (OCI_MANIFEST, DOCKER_MANIFEST, ""):
        raise NotAModel(f"its media type {kind!r} is not an OCI image manifest")
    try:
        config = doc["config"]
        layers: list[Layer] = []
        seen: set[str] = set()
        for i, raw in enumerate(doc.get("layers") or []):
            notes = raw.get("annotations") or {}
            path = notes.get(FILEPATH) or notes.get(TITLE) or ""
            if not path:
                raise UnnamedLayer(f"layer {i} names no file path (org.cncf.model.filepath or a title)")
            if not _safe_path(path):
                raise NotAModel(f"layer {i} names an unsafe file path: {path!r}")
            if path in seen:
                raise NotAModel(f"two layers name the file {path!r}")
            seen.add(path)
            digest = str(raw["digest"])
            if not _DIGEST.fullmatch(digest):
                raise NotAModel(f"layer {path!r} has digest {digest[:80]!r}; only sha256 is read")
            layers.append(Layer(path, int(raw["size"]), digest, str(raw.get("mediaType", ""))))
        if not layers:
            raise NotAModel("it has no layers")
        return Artifact(str(config["digest"]), int(config["size"]), str(config.get("mediaType", "")), tuple(layers))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, NotAModel):
            raise
        raise NotAModel(f"malformed manifest ({type(e).__name__}: {e})") from e


def read_config(body: bytes) -> ModelFacts:
    """What a ModelPack config says of the model (empty facts for any other config)."""
    try:
        doc = json.loads(body)
        descriptor, config = doc.get("descriptor") or {}, doc.get("config") or {}
        licenses = descriptor.get("licenses") or []
        return ModelFacts(
            name=str(descriptor.get("name", "")),
            revision=str(descriptor.get("revision", "")),
            architecture=str(config.get("architecture", "")),
            format=str(config.get("format", "")),
            parameters=parse_param_size(str(config.get("paramSize", ""))),
            dtype=str(config.get("precision", "")),
            quantization=str(config.get("quantization", "")),
            license=str(licenses[0]) if licenses else "",
        )
    except (ValueError, AttributeError, TypeError):
        return ModelFacts(name="")


def parse_param_size(text: str) -> int:
    scale = {"Q": 10**15, "T": 10**12, "B": 10**9, "M": 10**6, "K": 10**3}
    try:
        if text and text[-1].upper() in scale:
            return round(float(text[:-1]) * scale[text[-1].upper()])
        return int(text) if text else 0
    except ValueError:
        return 0
