"""Pushing a stored model to a registry as a ModelPack artifact: blobs first (each streamed from the object
store, skipped when the registry has it), then the config, then the manifest, which makes the tag point at them.

A push cut short leaves blobs in the registry and no manifest (the tag does not move); pushing again sends only
what is missing. Progress is reported as the registry accepts spans, at most every `REPORT_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

from model_manager.config import OciConfig
from model_manager.core.push import PushFailed, PushPlan, PushProgress, Report
from model_manager.oci import modelpack
from model_manager.oci.auth import Logins
from model_manager.oci.client import OCI_MANIFEST, Reader, Registry, bytes_reader, digest_of
from model_manager.oci.errors import RegistryError

REPORT_EVERY = 1.0  # seconds
BLOBS_AT_ONCE = 3

StoreReader = Callable[[str, int, int], AsyncIterator[bytes]]  # (key, offset, length) -> bytes of the object


def registry_session() -> aiohttp.ClientSession:
    """The HTTP client of every registry call: no overall deadline (a blob may take long), but connecting and each
    read must make progress."""
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False)


class ModelPusher:
    def __init__(self, http: aiohttp.ClientSession, config: OciConfig, logins: Logins, read: StoreReader) -> None:
        self.http = http
        self.config = config
        self.logins = logins
        self.read = read

    async def push(self, plan: PushPlan, report: Report) -> str:
        dest = plan.destination
        registry = Registry.configured(self.http, dest.registry, self.config, self.logins)
        layers = [modelpack.Layer(f.path, f.size, f"sha256:{f.sha256}") for f in plan.files]
        done = skipped = files = 0
        last = 0.0

        async def progress(force: bool = False) -> None:
            nonlocal last
            if force or time.monotonic() - last >= REPORT_EVERY:
                last = time.monotonic()
                await report(PushProgress(done, skipped, files))

        def accepted(n: int) -> None:
            nonlocal done
            done += n

        gate = asyncio.Semaphore(BLOBS_AT_ONCE)
        unique = {layer.digest: (layer, f) for layer, f in zip(layers, plan.files, strict=True)}

        unreadable: list[str] = []  # why the object store could not give a file, for the failure reason

        def reading(key: str) -> Reader:
            async def read(offset: int, length: int) -> AsyncIterator[bytes]:
                try:
                    async for chunk in self.read(key, offset, length):
                        yield chunk
                except Exception as e:
                    # The HTTP client reports a failing body as a broken upload: say what really failed.
                    unreadable.append(f"cannot read {key} from the object store ({type(e).__name__}: {e})")
                    raise

            return read

        async def one(digest: str) -> None:
            nonlocal done, skipped, files
            layer, f = unique[digest]
            async with gate:
                read = reading(f"{plan.prefix}/{f.path}")
                if not await registry.push_blob(dest.repository, digest, layer.size, read, accepted, plan.mount_from):
                    done, skipped = done + layer.size, skipped + layer.size  # the registry had it (or mounted it)
                files += sum(1 for x in layers if x.digest == digest)
                await progress()

        try:
            async with asyncio.TaskGroup() as group:
                for digest in unique:
                    group.create_task(one(digest))
            config = modelpack.config_blob(plan.facts, layers)
            config_digest = digest_of(config)
            await registry.push_blob(dest.repository, config_digest, len(config), bytes_reader(config), lambda n: None)
            annotations = {"org.opencontainers.image.title": plan.facts.name}
            if plan.facts.created_at:
                annotations["org.opencontainers.image.created"] = plan.facts.created_at
            body = modelpack.manifest(config, config_digest, layers, annotations)
            digest = await registry.put_manifest(dest.repository, dest.tag, body, OCI_MANIFEST)
        except* RegistryError as group_error:
            first = group_error.exceptions[0]
            raise PushFailed(unreadable[0] if unreadable else str(first)) from first
        await progress(force=True)
        return digest
