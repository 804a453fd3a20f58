"""The loader loop: static lists first, then claim requested models and load them, several at once.

Shape: stop event; claim; run the job; persist the outcome under asyncio.shield so cancellation cannot lose it;
progress reports (which renew the lease) as a side task of the job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from grpclib import GRPCError
from grpclib.const import Status

from model_manager.config import LoaderConfig
from model_manager.core.aio import wait_for_stop
from model_manager.core.file_rule import FileRule
from model_manager.core.ids import parse_hugging_face
from model_manager.loader.claims import LOST_CLAIM, Beat
from model_manager.loader.errors import LeaseLost, LoadError, PermanentError, TransientError, classify
from model_manager.loader.jobs import Jobs
from model_manager.loader.leftovers import Owner, leave
from model_manager.loader.outcomes import ClaimedModel, Failed, Loaded, Lost, Outcome, Report, Stopped
from model_manager.loader.progress import Progress
from model_manager.loader.worker_api import WorkerApi
from model_manager.objectstore.base import StoreError
from model_manager.proto.llmariner.models.server import v1 as pb

log = logging.getLogger(__name__)

_STATIC_SOURCES = {
    "huggingFace": pb.SourceRepository.HUGGING_FACE,
    "ollama": pb.SourceRepository.OLLAMA,
    "s3": pb.SourceRepository.OBJECT_STORE,
}


class LoaderLoop:
    def __init__(self, worker: WorkerApi, jobs: Jobs, cfg: LoaderConfig, holder: str, stop_grace: float = 10.0) -> None:
        self.worker = worker
        self.jobs = jobs
        self.cfg = cfg
        self.holder = holder
        self.stop_grace = stop_grace

    async def run(self, stop: asyncio.Event) -> None:
        """Static lists, then claims until stopped; the runner has ensured the storage config (loader/runner.py)."""
        await self.load_static(stop)
        if self.cfg.run_once:
            log.info("runOnce: static models loaded; exiting the loader")
            return
        while not stop.is_set():
            try:
                await self.drain(stop)
            except (GRPCError, OSError) as e:  # the loader carries on
                log.warning(
                    "worker API error while claiming models: %s; retrying in %.0fs", e, self.cfg.model_load_interval
                )
            if await wait_for_stop(stop, self.cfg.model_load_interval):
                break

    async def ensure_storage_config(self) -> None:
        """Record the tenant's path prefix on first start, as upstream loaders do, and store where the server says:
        it places every tenant but the default one in an area of its own, base models included."""
        try:
            found = await self.worker.get_storage_config(pb.GetStorageConfigRequest())
        except GRPCError as e:
            if e.status != Status.NOT_FOUND:
                raise
            try:
                found = await self.worker.create_storage_config(
                    pb.CreateStorageConfigRequest(path_prefix=self.jobs.path_prefix)
                )
            except GRPCError as e2:
                if e2.status != Status.ALREADY_EXISTS:
                    raise
                found = await self.worker.get_storage_config(pb.GetStorageConfigRequest())  # another loader's
        if found.path_prefix and found.path_prefix != self.jobs.path_prefix:
            log.info("storing under %s, the tenant's storage prefix", found.path_prefix)
            self.jobs.path_prefix = found.path_prefix

    async def load_static(self, stop: asyncio.Event) -> None:
        repo = _STATIC_SOURCES[self.cfg.downloader.kind]
        for entry in self.cfg.base_models:
            if stop.is_set():
                return
            await self._static(self._static_base(entry, repo), entry, stop)
        for spec in self.cfg.models:
            if stop.is_set():
                return
            await self._static(self.jobs.load_static_model(spec), spec.model, stop)

    async def _static_base(self, entry: str, repo: pb.SourceRepository) -> None:
        model_id, revision = entry, ""
        if repo == pb.SourceRepository.HUGGING_FACE and "@" in entry:
            ref = parse_hugging_face(entry)  # validated with the config; a bad entry fails only itself
            model_id, revision = ref.model_id, ref.revision
        await self.jobs.load_base(model_id, repo, revision=revision)

    async def _static(self, job: Coroutine[Any, Any, None], name: str, stop: asyncio.Event) -> None:
        outcome = await self._until_stop(job, stop)
        if isinstance(outcome, Failed):
            log.error("could not load %s: %s", name, outcome.reason)

    async def drain(self, stop: asyncio.Event) -> None:
        """Claim and load until nothing is requested, `concurrency` models at a time; a refused claim is raised
        once every slot has ended."""
        refused: list[GRPCError | OSError] = []
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.cfg.concurrency):
                tg.create_task(self._slot(stop, refused))
        if refused:
            raise refused[0]

    async def _slot(self, stop: asyncio.Event, refused: list[GRPCError | OSError]) -> None:
        # A refused claim ends only its own slot. Failing the task group would cancel the other slots mid-claim,
        # and a claim granted to a cancelled caller holds its model, unloaded, until the lease runs out.
        try:
            while not stop.is_set():
                base = await self.worker.acquire_unloaded_base_model(
                    pb.AcquireUnloadedBaseModelRequest(holder=self.holder)
                )
                if base.base_model_id:
                    await self._base(base, stop)
                    continue
                ft = await self.worker.acquire_unloaded_model(pb.AcquireUnloadedModelRequest(holder=self.holder))
                if ft.model_id:
                    await self._fine_tuned(ft, stop)
                    continue
                return
        except (GRPCError, OSError) as e:
            refused.append(e)

    async def _until_stop(self, job: Coroutine[Any, Any, Loaded | None], stop: asyncio.Event) -> Outcome:
        """Run `job`; on stop cancel it (it cleans up after itself) and give it `stop_grace` to do so."""
        task = asyncio.ensure_future(job)
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self.stop_grace)
            return Stopped()
        error = task.exception()
        if error is None:
            return task.result() or Loaded()  # base models register their files themselves
        if isinstance(error, LeaseLost):
            return Lost(str(error))
        if isinstance(error, LoadError):
            return Failed(str(error), retryable=isinstance(error, TransientError))
        if isinstance(error, StoreError | OSError | aiohttp.ClientError):
            # Met outside the retried transfers (e.g. clearing what an earlier attempt left): sorted the same way.
            known = classify(error)
            return Failed(str(known), retryable=isinstance(known, TransientError))
        log.error("loading failed unexpectedly", exc_info=error)
        return Failed(f"unexpected error: {error!r}")

    def _beat(self, claim: ClaimedModel) -> Beat:
        """Progress reports for `claim`; a refusal that means the model is no longer ours becomes LeaseLost."""

        async def beat(progress: Progress) -> None:
            numbers = pb.LoadingProgress(
                bytes_done=progress.done_bytes,
                bytes_total=progress.total_bytes,
                files_done=progress.done_files,
                files_total=progress.total_files,
            )
            try:
                report = Report(
                    message=progress.message(),
                    progress=numbers,
                    content_path=progress.content_path,
                    content_key=progress.content_key,
                )
                await claim.send(self.worker, report)
            except GRPCError as e:
                if e.status in LOST_CLAIM and claim.is_base:
                    raise await self.jobs.claims.lost_claim(e, claim.model_id, claim.project_id) from e
                if e.status in LOST_CLAIM:  # a fine-tuned row stays after success: NOT_FOUND means deleted
                    raise LeaseLost(e.message or str(e.status), deleted=e.status == Status.NOT_FOUND) from e
                if e.status == Status.RESOURCE_EXHAUSTED:  # over the tenant's quota: the load ends here
                    raise PermanentError(e.message or "over the tenant's storage quota") from e
                log.warning("progress report failed: %s", e)  # the lease has slack; keep going

        return beat

    async def _base(self, resp: pb.AcquireUnloadedBaseModelResponse, stop: asyncio.Event) -> None:
        claim = ClaimedModel(resp.base_model_id, resp.attempt, is_base=True, project_id=resp.project_id)
        job = self.jobs.load_base(
            resp.base_model_id,
            resp.source_repository,
            resp.project_id,
            resp.revision,
            self._beat(claim),
            resp.attempt,
            resp.convert_gguf,
            FileRule(tuple(resp.include), tuple(resp.exclude), resp.allow_pickle),
        )
        await self._finish(claim, await self._until_stop(job, stop))

    async def _fine_tuned(self, resp: pb.AcquireUnloadedModelResponse, stop: asyncio.Event) -> None:
        claim = ClaimedModel(resp.model_id, resp.attempt, is_base=False)
        job = self.jobs.load_fine_tuned(resp, self._beat(claim))
        outcome = await self._until_stop(job, stop)
        refused = await self._finish(claim, outcome)
        if refused is not None and isinstance(outcome, Loaded):
            # Deleted while it loaded (the files are nobody's), or taken over (they are the other loader's).
            prefix = resp.dest_path.rstrip("/")
            await leave(
                self.jobs.store, prefix, refused, False, functools.partial(self.jobs.discard, prefix, outcome.files)
            )

    async def _finish(self, claim: ClaimedModel, outcome: Outcome) -> Owner | None:
        """Persist the outcome, shielded: a loader being cancelled must still give the model back or fail it.
        None when the server took it; whose the model is now when it refused it (the claim no longer holds it)."""
        if isinstance(outcome, Lost):
            log.warning("stopped loading %s: %s", claim.model_id, outcome.reason)
            return Owner.UNKNOWN
        if isinstance(outcome, Stopped):
            log.info("giving %s back: the loader is stopping", claim.model_id)
        if isinstance(outcome, Failed):
            log.warning("loading %s failed: %s", claim.model_id, outcome.reason)
        try:
            await asyncio.shield(claim.send(self.worker, Report.of(outcome, self.holder)))
        except GRPCError as e:
            log.warning("could not report the outcome for %s: %s", claim.model_id, e.message or e.status)
            if e.status not in LOST_CLAIM:
                return None
            return Owner.NOBODY if e.status == Status.NOT_FOUND else Owner.ANOTHER
        return None
