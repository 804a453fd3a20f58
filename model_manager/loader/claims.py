"""What the server says about who holds a model and its files: the questions a load asks before it removes
anything, and what a refusal of its report or registration means."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from grpclib import GRPCError
from grpclib.const import Status

from model_manager.core.ids import converted
from model_manager.loader.errors import LeaseLost
from model_manager.loader.leftovers import Owner
from model_manager.loader.progress import Progress
from model_manager.loader.worker_api import WorkerApi
from model_manager.proto.llmariner.models.server import v1 as pb

T = TypeVar("T")
Beat = Callable[[Progress], Awaitable[None]]  # sends a progress report; raises LeaseLost when refused
# Refusals of a status update or registration that mean the claim no longer holds the model.
LOST_CLAIM = (Status.FAILED_PRECONDITION, Status.NOT_FOUND)


def owner_after(lost: LeaseLost) -> Owner:
    """Whose the keys are once the claim is lost: nobody's if the model was deleted, else the new holder's."""
    return Owner.NOBODY if lost.deleted else Owner.ANOTHER


async def owner_now(beat: Beat | None, progress: Progress) -> Owner:
    """Whose a failed load's keys are: one more report says whether this loader still holds its claim (then
    they are nobody else's), lost it, or the model was deleted. A load without a claim (the static lists) owns its
    keys."""
    if beat is None:
        return Owner.NOBODY
    try:
        await beat(progress)
    except LeaseLost as lost:
        return owner_after(lost)
    except Exception:
        return Owner.UNKNOWN
    return Owner.NOBODY


async def not_found(call: Awaitable[object]) -> bool:
    """Whether a worker lookup answered NOT_FOUND (any other error propagates)."""
    try:
        await call
    except GRPCError as e:
        if e.status == Status.NOT_FOUND:
            return True
        raise
    return False


async def ignore_exists(call: Awaitable[T]) -> T | None:
    """A create that found its row made already (by an earlier attempt, or another project's load) is done."""
    try:
        return await call
    except GRPCError as e:
        if e.status == Status.ALREADY_EXISTS:
            return None
        raise


@dataclass(frozen=True)
class Claims:
    worker: WorkerApi

    async def stored(self, key: str | None) -> list[pb.StoredContent]:
        """The loaded models whose files are the content `key` (none when the key is unknown)."""
        if not key:
            return []
        found = await self.worker.find_stored_content(pb.FindStoredContentRequest(content_key=key))
        return list(found.models)

    async def loaded_owns(self, key: str | None) -> bool | None:
        """Whether a loaded model now owns the files of content `key` (None: the server cannot say)."""
        try:
            return bool(await self.stored(key))
        except Exception:
            return None

    async def lost_claim(self, refusal: GRPCError, model_id: str, project_id: str) -> LeaseLost:
        """What a refused report or registration of a base model means. NOT_FOUND is a deleted model, unless
        another loader completed it meanwhile (its requested row goes away on success): then, as after a takeover,
        the files are the other loader's and must stay."""
        deleted = refusal.status == Status.NOT_FOUND
        if deleted:
            path_req = pb.GetBaseModelPathRequest(id=converted(model_id), project_id=project_id)
            deleted = await not_found(self.worker.get_base_model_path(path_req))
        return LeaseLost(refusal.message or str(refusal.status), deleted=deleted)

    async def fenced(self, model_id: str, project_id: str, registration: Awaitable[None]) -> None:
        """Run a registration; a refusal meaning the claim no longer holds the model becomes LeaseLost."""
        try:
            await registration
        except GRPCError as e:
            if e.status not in LOST_CLAIM:
                raise
            raise await self.lost_claim(e, model_id, project_id) from e
