"""A push of a stored model to an OCI registry, as the service hands it to whatever pushes (the composition root
wires the registry client in), and what comes back: progress while it runs, and the manifest digest or a failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from model_manager.core.files import StoredFile
from model_manager.core.oci_ref import OciRef


@dataclass(frozen=True)
class ModelFacts:
    """What the artifact's config says of the model: the metadata the loader read when it stored it."""

    name: str
    created_at: str = ""  # RFC 3339
    revision: str = ""
    architecture: str = ""
    format: str = ""  # safetensors, gguf, pytorch
    parameters: int = 0
    dtype: str = ""
    quantization: str = ""
    license: str = ""


@dataclass(frozen=True)
class PushPlan:
    destination: OciRef
    prefix: str  # where the files are in the object store
    files: tuple[StoredFile, ...]  # with the sha256 the loader recorded: the layers' digests
    facts: ModelFacts
    mount_from: str = ""  # a repository of the same registry this model was pushed to before: blobs mount from it


@dataclass(frozen=True)
class PushProgress:
    bytes_done: int  # in the registry now: sent, or found there
    bytes_skipped: int  # of those, found there (not sent)
    files_done: int


Report = Callable[[PushProgress], Awaitable[None]]


class PushFailed(Exception):
    """A push that cannot finish; the message is meant for the person who asked for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Pusher(Protocol):
    async def push(self, plan: PushPlan, report: Report) -> str:
        """Push the plan's files and its manifest; the manifest's digest. Raises PushFailed."""
        ...
