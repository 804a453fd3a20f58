"""Pick and build the source for a model."""

from __future__ import annotations

from dataclasses import replace

import aiohttp

from model_manager.config import DownloaderConfig, OciConfig, S3Config
from model_manager.core.ids import InvalidId, parse_hugging_face
from model_manager.core.oci_ref import allowed, parse_oci
from model_manager.loader.errors import PermanentError
from model_manager.loader.sources.base import Source
from model_manager.loader.sources.huggingface import HuggingFaceSource
from model_manager.loader.sources.oci import OciSource
from model_manager.loader.sources.ollama import OllamaSource
from model_manager.loader.sources.s3 import S3Source
from model_manager.objectstore.s3 import S3Store
from model_manager.oci.auth import Logins
from model_manager.oci.client import Registry
from model_manager.proto.llmariner.models.server.v1 import SourceRepository


class SourceFactory:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        downloader: DownloaderConfig,
        store_s3: S3Config | None,
        hf_endpoint: str | None = None,
        oci: OciConfig | None = None,
    ) -> None:
        self.http = http
        self.oci = oci or OciConfig()
        self.logins = Logins(self.oci)  # a login whose password variable is missing stops the start here
        self.downloader = downloader
        self.store_s3 = store_s3  # endpoint and region for s3:// locations when the downloader names none
        self.hf_endpoint = hf_endpoint
        self._buckets: dict[str, S3Store] = {}

    def hugging_face(self, model_id: str, revision: str = "") -> HuggingFaceSource:
        try:
            ref = parse_hugging_face(model_id)
        except InvalidId as e:
            raise PermanentError(str(e)) from e
        if revision:
            ref = replace(ref, revision=revision)
        return HuggingFaceSource(self.http, ref, self.hf_endpoint, self.downloader.hf_cache_dir)

    def base(self, model_id: str, repo: SourceRepository, revision: str = "") -> Source:
        if repo == SourceRepository.HUGGING_FACE:
            return self.hugging_face(model_id, revision)
        if repo == SourceRepository.OLLAMA:
            return OllamaSource(self.http, self.downloader.ollama_registry, model_id)
        if repo == SourceRepository.OCI:
            try:
                ref = parse_oci(model_id)
            except InvalidId as e:
                raise PermanentError(e.message) from e
            if not allowed(ref.registry, self.oci.allowed_registries):  # a loader checks what it reaches itself
                raise PermanentError(f"the registry {ref.registry} is not in oci.allowedRegistries")
            if revision:  # the manifest digest the request's check saw: the tag may have moved since
                ref = ref.with_digest(revision)
            return OciSource(Registry.configured(self.http, ref.registry, self.oci, self.logins), ref)
        if repo == SourceRepository.OBJECT_STORE:
            s3 = self.downloader.s3
            if s3 is None or not s3.bucket:
                raise PermanentError("loader.downloader.s3 is not configured: cannot load models from a bucket")
            prefix = f"{s3.path_prefix.strip('/')}/{model_id}" if s3.path_prefix else model_id
            return S3Source(self._bucket(s3.bucket, s3), prefix)
        raise PermanentError(f"cannot load a base model from source repository {repo.name}")

    def fine_tuned(self, repo: SourceRepository, location: str) -> Source:
        if repo == SourceRepository.HUGGING_FACE:
            return self.hugging_face(location)
        if repo == SourceRepository.OBJECT_STORE:
            bucket, _, key = location.removeprefix("s3://").partition("/")
            if not location.startswith("s3://") or not bucket or not key:
                raise PermanentError(f"model_file_location {location!r} is not an s3://bucket/path URL")
            return S3Source(self._bucket(bucket, self.downloader.s3 or self.store_s3), key)
        raise PermanentError(f"cannot load a fine-tuned model from source repository {repo.name}")

    def _bucket(self, bucket: str, base: S3Config | None) -> S3Store:
        if bucket not in self._buckets:
            cfg = replace(base, bucket=bucket) if base is not None else S3Config(bucket=bucket)
            public = self.downloader.s3 is not None and base is self.downloader.s3 and self.downloader.s3.is_public
            self._buckets[bucket] = S3Store(cfg, anonymous=public)
        return self._buckets[bucket]

    async def close(self) -> None:
        for store in self._buckets.values():
            await store.close()
