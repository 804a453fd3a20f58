"""Pick the object store the configuration asks for."""

from __future__ import annotations

from model_manager.config import ObjectStoreConfig
from model_manager.objectstore.base import ObjectStore, UnconfiguredStore
from model_manager.objectstore.local import LocalStore


def open_store(cfg: ObjectStoreConfig) -> ObjectStore:
    if cfg.s3 is None:
        return LocalStore(cfg.local_path)
    if not cfg.s3.bucket:
        return UnconfiguredStore("objectStore.s3.bucket is not configured; this needs the object store")
    from model_manager.objectstore.s3 import S3Store  # aiobotocore is only imported when S3 is used

    return S3Store(cfg.s3)
