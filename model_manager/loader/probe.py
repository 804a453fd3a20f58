"""The fail-fast check of a requested base model, with the loader's own sources: the same lookups a load starts
with (the Hugging Face commit and file tree, the Ollama manifest, the bucket listing), so a request the loader
would fail on at once is refused at once instead."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

from model_manager.config import Config
from model_manager.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from model_manager.core.file_rule import DEFAULT_RULE, FileRule
from model_manager.loader.convert.checkpoint import UnsupportedModel
from model_manager.loader.convert.precheck import convertible
from model_manager.loader.errors import PermanentError, SourceDenied, SourceNotFound, TransientError
from model_manager.loader.selection import SelectionError, choose
from model_manager.loader.sources.factory import SourceFactory
from model_manager.proto.llmariner.models.server.v1 import SourceRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFacts:
    revision: str  # a Hugging Face commit, an Ollama manifest digest; "" for a bucket
    total_bytes: int
    files: int


class SourceProbe:
    def __init__(self, config: Config, timeout: float, hf_endpoint: str | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self.hf_endpoint = hf_endpoint
        self._http: aiohttp.ClientSession | None = None
        self._sources: SourceFactory | None = None

    def _factory(self) -> SourceFactory:
        if self._sources is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            downloader, store_s3 = self.config.loader.downloader, self.config.object_store.s3
            self._sources = SourceFactory(self._http, downloader, store_s3, self.hf_endpoint, self.config.oci)
        return self._sources

    async def check(
        self, model_id: str, source: int, revision: str, convert: str = "", rule: FileRule = DEFAULT_RULE
    ) -> SourceFacts | None:
        bucket = self.config.loader.downloader.s3
        if source == SourceRepository.OBJECT_STORE and (bucket is None or not bucket.bucket):
            return None  # this server was not told the source bucket (its loaders were): nothing to ask
        try:
            async with asyncio.timeout(self.timeout):
                found = self._factory().base(model_id, SourceRepository(source), revision)
                files = (await choose(found, await found.list_files(), rule)).files
                if convert:
                    await convertible(found, files)
        except SelectionError as e:
            raise InvalidArgument(str(e)) from e
        except UnsupportedModel as e:
            raise InvalidArgument(f"convert.gguf: {e}") from e
        except SourceNotFound as e:
            raise NotFound(str(e)) from e
        except SourceDenied as e:
            raise PermissionDenied(str(e)) from e
        except PermanentError as e:
            raise FailedPrecondition(f"cannot load this model: {e}") from e
        except (TransientError, TimeoutError) as e:
            # The source is slow or down right now: that is the loader's to wait out, not a reason to refuse.
            log.info("accepted %s unchecked: its source did not answer in time (%s)", model_id, e or "timeout")
            return None
        return SourceFacts(found.revision, sum(f.size or 0 for f in files), len(files))

    async def close(self) -> None:
        if self._sources is not None:
            await self._sources.close()
        if self._http is not None:
            await self._http.close()
