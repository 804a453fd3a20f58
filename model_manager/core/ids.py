"""Model id rules shared by the service, the loader and the config: validation, parsing, conversion.

Pure: no I/O, no database, no transport. Errors are `InvalidId` (a ValueError); each caller turns it into its own
kind of error (the service into InvalidArgument, the loader into a failed load, the config into a ConfigError).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_ID_LEN = 256
MAX_SUFFIX_LEN = 18
_SUFFIX = re.compile(r"^[a-z0-9-]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")  # one regex scan: a per-character loop showed in request profiles
_URLSAFE = string.ascii_letters + string.digits + "-_"


# Every rule takes the value and the name of the field it came from (used in its error message).
Rule = Callable[[str, str], object]


class InvalidId(ValueError):
    """An id, suffix or location that breaks the rules; the message names the field and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_text(value: str, field: str) -> str:
    """Any text the service stores: valid Unicode (no lone surrogates) without NUL characters, which neither
    PostgreSQL nor UTF-8 can hold."""
    if "\x00" in value:
        raise InvalidId(f"{field} must not contain NUL characters")
    if _SURROGATE.search(value):
        raise InvalidId(f"{field} must be valid Unicode text (it has a lone surrogate)")
    return value


def check_id(value: str, field: str = "id") -> str:
    """Reject ids that are empty, too long, or could escape an object-store prefix."""
    if not value:
        raise InvalidId(f"{field} is required")
    if len(value) > MAX_ID_LEN:
        raise InvalidId(f"{field} must be at most {MAX_ID_LEN} characters, got {len(value)}")
    if _SURROGATE.search(value):
        raise InvalidId(f"{field} must be valid Unicode text (it has a lone surrogate)")
    if _CONTROL.search(value):
        raise InvalidId(f"{field} must not contain control characters")
    if any(seg in (".", "..") for seg in value.split("/")):
        raise InvalidId(f"{field} must not contain '.' or '..' path segments")
    return value


def require(value: str, field: str) -> str:
    if not value:
        raise InvalidId(f"{field} is required")
    return value


def converted(model_id: str) -> str:
    """The stored id of a loaded model: "org/name" becomes "org-name"."""
    return model_id.replace("/", "-")


@dataclass(frozen=True)
class HuggingFaceRef:
    repo: str  # org/name
    file: str  # "" for the whole repo
    revision: str  # "" for the default branch

    @property
    def model_id(self) -> str:
        return f"{self.repo}/{self.file}" if self.file else self.repo


def parse_hugging_face(value: str, field: str = "id") -> HuggingFaceRef:
    """`org/name`, `org/name/file`, each optionally followed by `@<revision>`."""
    check_id(value, field)
    body, _, revision = value.partition("@")
    if "@" in value and not revision:
        raise InvalidId(f"{field} {value!r}: the revision after '@' is empty")
    parts = body.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidId(
            f"{field} {value!r} is not a Hugging Face id: expected 'org/name' or 'org/name/file', "
            "optionally followed by '@<revision>'"
        )
    repo = "/".join(parts[:2])
    if not all(_HF_PART.fullmatch(p) for p in parts[:2]) or ".." in repo or "--" in repo or len(repo) > 96:
        # The Hub's own rule for repo ids (huggingface_hub refuses any other before asking), and nothing a URL
        # would decode ('%') into another path.
        raise InvalidId(
            f"{field} {value[:120]!r}: a Hugging Face repo id is letters, digits, '-', '_' and '.', neither part "
            "starting or ending with '-' or '.', without '--' or '..', at most 96 characters"
        )
    return HuggingFaceRef(repo="/".join(parts[:2]), file=parts[2] if len(parts) == 3 else "", revision=revision)


# An Ollama name: up to three '/'-separated parts (host, namespace, model) of letters, digits, '.', '_' and '-',
# starting with a letter or digit; a tag of the same characters. Nothing else, '%' included: the name becomes a
# registry URL path, and an escaped '/' or '.' would let it leave the repository it names.
_OLLAMA_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_OLLAMA_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


_HF_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def check_ollama(value: str, field: str = "id") -> str:
    check_id(value, field)
    name, sep, tag = value.rpartition(":")
    if not sep or not name or not tag:
        raise InvalidId(f"{field} {value!r} is not an Ollama id: expected 'name:tag'")
    parts = name.split("/")
    if len(parts) > 3 or not all(_OLLAMA_PART.fullmatch(p) for p in parts) or not _OLLAMA_TAG.fullmatch(tag):
        raise InvalidId(
            f"{field} {value[:120]!r} is not an Ollama id: the name is up to three '/'-separated parts and the tag "
            "one, each of letters, digits, '.', '_' and '-' starting with a letter or digit"
        )
    return value


def check_suffix(suffix: str) -> str:
    require(suffix, "suffix")
    if len(suffix) > MAX_SUFFIX_LEN:
        raise InvalidId(f"suffix must be at most {MAX_SUFFIX_LEN} characters, got {len(suffix)}")
    if not _SUFFIX.match(suffix):
        raise InvalidId(f"suffix {suffix!r} must be made of lowercase letters, digits and '-'")
    return suffix


def check_s3_url(value: str, field: str) -> str:
    require(value, field)
    if not value.startswith("s3://"):
        raise InvalidId(f"{field} must be an s3://bucket/path URL, got {value!r}")
    bucket, _, key = value[len("s3://") :].partition("/")
    if not bucket or not key:
        raise InvalidId(f"{field} must name a bucket and a path: s3://bucket/path, got {value!r}")
    check_id(key, field)
    return value


MAX_PATH_LEN = 1024


def check_object_path(value: str, field: str) -> str:
    """A key (or key prefix) inside the bucket: '/'-separated and relative, never climbing out of where it is
    put, with no URL scheme, control characters or backslashes. Paths that name a bucket (`s3://other/x`) or the
    file system (`/etc/x`, `../x`) end here, whoever sends them: a source's file list or a worker."""
    require(value, field)
    problem = ""
    if len(value) > MAX_PATH_LEN:
        problem = f"it must be at most {MAX_PATH_LEN} characters"
    elif "://" in value:
        problem = "it must be a path inside the configured bucket, not a URL"
    elif value.startswith("/") or any(seg in ("", ".", "..") for seg in value.split("/")):
        problem = "it must be a relative path without empty, '.' or '..' segments"
    elif _CONTROL.search(value) or "\\" in value or _SURROGATE.search(value):
        problem = "it must not contain control characters, backslashes or lone surrogates"
    if problem:
        raise InvalidId(f"{field} {value!r} is not allowed: {problem}")
    return value


# Every tenant but the default one stores under `tenants/<tenant id>/`; the default tenant anywhere else.
TENANTS_ROOT = "tenants"


def is_within(path: str, prefix: str) -> bool:
    """`path` is `prefix` itself or lies below it, segment by segment ("models/a" is not within "models/ab")."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def storage_directory(model_id: str) -> str:
    """Where a base model's files go, below `<pathPrefix>/<baseModelPathPrefix>`: the requested id, ":" -> "-"."""
    return model_id.replace(":", "-")


def fine_tuned_id(base_model_id: str, suffix: str) -> str:
    return f"ft:{base_model_id}:{suffix}"


_CONTENT_KEY = re.compile(r"[a-z][a-z-]*:[A-Za-z0-9._:/-]{1,300}@[A-Za-z0-9._:-]{1,160}")


def content_key(source_kind: str, model_id: str, revision: str, selected: Sequence[str] = ()) -> str:
    """What a base model's files are: its source's kind, what was asked of it (the converted id: the repo, and the
    file for a single-file request; the layout of an Ollama model's files names its tag) and the revision resolved
    there (a Hugging Face commit, an Ollama manifest digest, a digest of a bucket prefix's etags). Models of one
    tenant with the same key, whatever their project, share one copy. "" when the revision is unknown.
    `selected` names the files stored when they are not all of the revision's: a digest of them ends the key, so
    that only the same selection shares a copy."""
    if not revision:
        return ""
    key = f"{source_kind}:{converted(model_id)}@{revision}"
    if selected:
        key += ":files-" + hashlib.sha256("\n".join(selected).encode()).hexdigest()[:32]
    return key


def check_content_key(value: str, field: str = "content_key") -> str:
    if value and not _CONTENT_KEY.fullmatch(value):
        raise InvalidId(f"{field} {value[:80]!r} must read <source kind>:<model>@<revision> (letters, digits, ._:/-)")
    return value


def content_directory(model_id: str, key: str) -> str:
    """The directory of one content, below `<pathPrefix>/<baseModelPathPrefix>`: the id that first loaded it and a
    short digest of its content key, so that another revision of the same model never lands in the same place."""
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{storage_directory(model_id)}@{tag}"


# The tensor types a base model can be converted to as GGUF (CreateModelRequest.convert.gguf).
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")


def check_gguf_type(value: str, field: str = "convert.gguf") -> str:
    if value not in GGUF_TYPES:
        raise InvalidId(f"{field} must be one of {', '.join(GGUF_TYPES)}, got {value[:40]!r}")
    return value


def gguf_id(model_id: str, gguf_type: str) -> str:
    """The id of the GGUF a base model is converted to: "org/name" as q8_0 is "org-name-q8_0"."""
    return f"{converted(model_id)}-{gguf_type}"


def gguf_content_key(source_key: str, gguf_type: str) -> str:
    """What a converted GGUF is: its source's content and the type ("" when the source's is unknown)."""
    return f"gguf:{source_key}:{gguf_type}" if source_key else ""


def static_fine_tuned_id(base_model: str, model: str) -> str:
    """The id of a fine-tuned model listed in the loader's static `models` config."""
    return fine_tuned_id(converted(base_model), converted(model))


def random_suffix(length: int = 10) -> str:
    return "".join(secrets.choice(_URLSAFE) for _ in range(length))
