"""Registering what a base-model load stored: the rows the worker API creates for it (one per model, one per
file of a split GGUF repo) and the Hugging Face repo record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model_manager.core.files import StoredFile, to_messages
from model_manager.core.ids import converted
from model_manager.loader.claims import ignore_exists
from model_manager.loader.formats import Detected
from model_manager.loader.metadata import MetadataReader
from model_manager.loader.worker_api import WorkerApi
from model_manager.proto.llmariner.models.server import v1 as pb


@dataclass(frozen=True)
class Registration:
    """What every model row a base-model load registers has in common."""

    model_id: str  # as requested (and claimed)
    repo: pb.SourceRepository
    project_id: str
    revision: str
    content_key: str
    attempt: int  # the claim's; 0 for the static list, which has no claim

    @property
    def base_id(self) -> str:
        return converted(self.model_id)


@dataclass(frozen=True)
class Registrar:
    worker: WorkerApi

    async def stored_files(
        self,
        reg: Registration,
        prefix: str,
        detected: Detected,
        stored: list[StoredFile],
        metadata: MetadataReader,
    ) -> None:
        """The model (or each file of a split GGUF repo, as a model of its own) over the files this load stored."""
        if detected.split_gguf:
            by_path = {f.path: f for f in stored}
            for name in detected.split_gguf:
                stem = name.removesuffix(".gguf")
                await self.create(
                    reg,
                    id=f"{reg.base_id}-{stem}",
                    path=f"{prefix}/{stem}",
                    formats=[pb.ModelFormat.GGUF],
                    gguf_model_path=f"{prefix}/{name}",
                    files=to_messages([by_path[name]]),
                    metadata=metadata.message(by_path[name].size, gguf_file=name),
                )
        else:
            await self.create(
                reg,
                id=reg.base_id,
                path=prefix,
                formats=detected.formats,
                gguf_model_path=f"{prefix}/{detected.gguf_file}" if detected.gguf_file else "",
                files=to_messages(stored),
                metadata=metadata.message(sum(f.size for f in stored), gguf_file=detected.gguf_file),
            )
        await self._record_repo(reg)

    async def shared_files(self, reg: Registration, detected: Detected, shared: list[pb.StoredContent]) -> None:
        """The model over the files another model of the same content stored: the same paths, files and
        metadata, under this model's own id(s)."""
        for found in shared if detected.split_gguf else shared[:1]:
            stem = found.gguf_model_path.rpartition("/")[2].removesuffix(".gguf")
            await self.create(
                reg,
                id=f"{reg.base_id}-{stem}" if detected.split_gguf else reg.base_id,
                path=found.path,
                formats=list(found.formats),
                gguf_model_path=found.gguf_model_path,
                files=list(found.files),
                metadata=found.metadata,
            )
        await self._record_repo(reg)

    async def create(self, reg: Registration, **fields: Any) -> None:
        request = pb.CreateBaseModelRequest(
            source_repository=reg.repo,
            project_id=reg.project_id,
            revision=reg.revision,
            content_key=reg.content_key,
            loading_model_id=reg.model_id if reg.attempt else "",
            attempt=reg.attempt,
            **fields,
        )
        await ignore_exists(self.worker.create_base_model(request))

    async def _record_repo(self, reg: Registration) -> None:
        if reg.repo == pb.SourceRepository.HUGGING_FACE and reg.model_id.count("/") == 1:
            request = pb.CreateHfModelRepoRequest(name=reg.model_id, project_id=reg.project_id)
            await ignore_exists(self.worker.create_hf_model_repo(request))
