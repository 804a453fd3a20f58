"""An S3 bucket as a source: fine-tuned models at s3://bucket/path, or base models mirrored from a bucket."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from model_manager.loader.errors import SourceNotFound
from model_manager.loader.sources.base import RemoteFile, Source
from model_manager.objectstore.s3 import S3Store


class S3Source(Source):
    kind = "object-store"

    def __init__(self, store: S3Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.name = f"s3://{store.bucket}/{self.prefix}"

    async def list_files(self) -> list[RemoteFile]:
        objects = await self.store.list_objects(self.prefix)  # a StoreError is classified by the retry runner
        files = []
        for o in objects:
            if o.key == self.prefix:  # the location names a single object
                files.append(RemoteFile(o.key.rsplit("/", 1)[-1], o.size, source_key=o.key))
            elif o.key.startswith(self.prefix + "/") and not o.key.endswith("/"):
                files.append(RemoteFile(o.key[len(self.prefix) + 1 :], o.size, source_key=o.key))
        if not files:
            raise SourceNotFound(f"{self.name}: no objects found")
        # The revision of a bucket prefix: a digest of its objects' names, sizes and etags (any change to any
        # object changes it), so that loads of the same objects share one copy and a changed object never does.
        if all(o.etag for o in objects):
            listing = "\n".join(f"{o.key[len(self.prefix) :]}\t{o.size}\t{o.etag}" for o in objects)
            self.revision = "etags-" + hashlib.sha256(listing.encode()).hexdigest()
        return files

    def open(self, f: RemoteFile, offset: int = 0) -> AsyncIterator[bytes]:
        return self.store.read(f.source_key, offset)
