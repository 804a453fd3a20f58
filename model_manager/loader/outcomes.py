"""How a load ended, as a type the loop can match on, and the status update that reports it.

A claimed model is base or fine-tuned; both report through `ClaimedModel.send`, which builds the one request of
the right kind, fenced by the claim's attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_manager.core.files import StoredFile, to_messages
from model_manager.loader.worker_api import WorkerApi
from model_manager.proto.llmariner.models.server import v1 as pb


@dataclass(frozen=True)
class Loaded:
    # Fine-tuned models: their files and what they are; base models register both themselves.
    files: list[StoredFile] = field(default_factory=list)
    metadata: pb.ModelMetadata | None = None


@dataclass(frozen=True)
class Failed:
    reason: str  # for a person: shown as the model's loading_failure_reason
    retryable: bool = False  # a source or store outage: a later attempt may succeed


@dataclass(frozen=True)
class Stopped:
    """The loader is stopping: the model goes back to REQUESTED for the next loader."""


@dataclass(frozen=True)
class Lost:
    """Another loader holds the model now (its lease expired), or it was deleted: nothing to report."""

    reason: str


Outcome = Loaded | Failed | Stopped | Lost


@dataclass(frozen=True)
class Report:
    """One status update for a claimed model: progress (a message), success, failure or release."""

    message: str = ""
    success: bool = False
    failure: str = ""
    retryable_failure: str = ""
    release: bool = False
    files: list[StoredFile] = field(default_factory=list)
    progress: pb.LoadingProgress | None = None  # the numbers behind a progress message
    metadata: pb.ModelMetadata | None = None  # with success: what the files say the model is
    content_path: str = ""  # base models: where the load writes, and what (see Progress)
    content_key: str = ""

    @classmethod
    def of(cls, outcome: Loaded | Failed | Stopped, holder: str) -> Report:
        match outcome:
            case Loaded(files, metadata):
                return cls(success=True, files=files, metadata=metadata)
            case Failed(reason, retryable):
                return cls(retryable_failure=reason) if retryable else cls(failure=reason)
            case Stopped():
                return cls(release=True, message=f"loader {holder} stopped; waiting for a loader")


@dataclass(frozen=True)
class ClaimedModel:
    model_id: str
    attempt: int  # fences every update: a loader whose lease was taken over cannot overwrite the new attempt
    is_base: bool
    project_id: str = ""  # base models only

    async def send(self, worker: WorkerApi, report: Report) -> None:
        common: dict[str, Any] = {
            "id": self.model_id,
            "attempt": self.attempt,
            "status_message": report.message,
            "release": report.release,
            "retryable_failure": report.retryable_failure,
            "progress": report.progress,
        }
        failure = report.failure or None
        if self.is_base:
            await worker.update_base_model_loading_status(
                pb.UpdateBaseModelLoadingStatusRequest(
                    project_id=self.project_id,
                    success=pb.UpdateBaseModelLoadingStatusRequestSuccess() if report.success else None,
                    failure=failure and pb.UpdateBaseModelLoadingStatusRequestFailure(reason=failure),
                    content_path=report.content_path,
                    content_key=report.content_key,
                    **common,
                )
            )
        else:
            await worker.update_model_loading_status(
                pb.UpdateModelLoadingStatusRequest(
                    success=pb.UpdateModelLoadingStatusRequestSuccess() if report.success else None,
                    failure=pb.UpdateModelLoadingStatusRequestFailure(reason=report.failure)
                    if report.failure
                    else None,
                    files=to_messages(report.files),
                    metadata=report.metadata,
                    **common,
                )
            )
