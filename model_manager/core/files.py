"""The files a loader stored for a model (path, size, sha256), and their one conversion to and from messages.

Neutral ground: the loader produces them, the service records them, the store keeps them as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from model_manager.proto.llmariner.models.server.v1 import ModelFile


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the model's path
    size: int
    sha256: str


def to_messages(files: Iterable[StoredFile]) -> list[ModelFile]:
    return [ModelFile(path=f.path, size=f.size, sha256=f.sha256) for f in files]


def from_messages(files: Iterable[ModelFile]) -> list[StoredFile]:
    return [StoredFile(path=f.path, size=f.size, sha256=f.sha256) for f in files]


def encode(files: Sequence[StoredFile]) -> str:
    """The JSON form the store keeps in a model row."""
    return json.dumps([{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files])


def decode(raw: str | None) -> tuple[StoredFile, ...]:
    return tuple(StoredFile(**f) for f in json.loads(raw)) if raw and raw != "[]" else ()
