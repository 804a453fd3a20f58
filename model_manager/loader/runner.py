"""Build the loader from the configuration and run it until stopped (or, with runOnce, until done)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from grpclib import GRPCError
from grpclib.const import Status

from model_manager.config import Config, ConfigError
from model_manager.core.aio import wait_for_stop
from model_manager.loader.jobs import Jobs
from model_manager.loader.loop import LoaderLoop
from model_manager.loader.sources.factory import SourceFactory
from model_manager.loader.worker_api import WorkerApi
from model_manager.objectstore.base import ObjectStore

log = logging.getLogger(__name__)

# Generous read timeout: a registry may pause mid-blob; connection setup should be quick.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)


async def run_loader(
    config: Config,
    worker: WorkerApi,
    store: ObjectStore,
    holder: str,
    stop: asyncio.Event,
    hf_endpoint: str | None = None,
) -> None:
    store.check_configured()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        sources = SourceFactory(http, config.loader.downloader, config.object_store.s3, hf_endpoint, config.oci)
        jobs = Jobs(
            worker,
            store,
            sources,
            config.object_store.path_prefix,
            config.object_store.base_model_path_prefix,
            progress_interval=config.loader.progress_interval,
            limits=config.limits,
        )
        loop = LoaderLoop(worker, jobs, config.loader, holder)
        try:
            while not stop.is_set():
                try:
                    await loop.ensure_storage_config()
                    break
                except OSError as e:
                    log.warning("worker API unreachable (%s); retrying", e)
                    await wait_for_stop(stop, 2)
                except GRPCError as e:
                    if e.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED):
                        # No key, a revoked one, or a public key: retrying cannot help; say which setting to fix.
                        raise ConfigError(
                            f"LLMO_CLUSTER_REGISTRATION_KEY: the worker API refused this loader: {e.message}"
                        ) from e
                    raise
            await loop.run(stop)
        finally:
            await sources.close()
