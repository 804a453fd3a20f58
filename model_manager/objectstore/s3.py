"""S3-compatible object store through aiobotocore. Credentials come from the usual AWS environment or profile."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from model_manager.config import S3Config
from model_manager.objectstore.base import ObjectInfo, ObjectStore, check_key

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


class S3Store(ObjectStore):
    def __init__(self, cfg: S3Config) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    async def client(self) -> Any:
        # Created on first use: the server starts even while the store is unreachable.
        if self._client is None:
            stack = AsyncExitStack()
            session = get_session()
            kwargs: dict[str, Any] = {
                "region_name": self.cfg.region or None,
                "config": AioConfig(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32),
                "verify": not self.cfg.insecure_skip_verify,
            }
            if self.cfg.endpoint_url:
                kwargs["endpoint_url"] = self.cfg.endpoint_url
            if self.cfg.assume_role_arn:
                kwargs.update(await self._assumed_credentials(session))
            self._client = await stack.enter_async_context(session.create_client("s3", **kwargs))
            self._stack = stack
        return self._client

    async def _assumed_credentials(self, session: Any) -> dict[str, str]:
        args = {"RoleArn": self.cfg.assume_role_arn, "RoleSessionName": "model-manager"}
        if self.cfg.assume_role_external_id:
            args["ExternalId"] = self.cfg.assume_role_external_id
        async with session.create_client("sts", region_name=self.cfg.region or None) as sts:
            creds = (await sts.assume_role(**args))["Credentials"]
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    async def put_bytes(self, key: str, data: bytes) -> None:
        s3 = await self.client()
        await s3.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)

    async def get_bytes(self, key: str) -> bytes:
        s3 = await self.client()
        resp = await s3.get_object(Bucket=self.bucket, Key=check_key(key))
        async with resp["Body"] as body:
            return await body.read()  # type: ignore[no-any-return]

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        s3 = await self.client()
        out: list[ObjectInfo] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(ObjectInfo(key=o["Key"], size=o["Size"]) for o in page.get("Contents", []))
        return out

    async def delete_keys(self, keys: list[str]) -> None:
        s3 = await self.client()
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
            resp = await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise OSError(f"S3 refused to delete {first.get('Key')}: {first.get('Message')}")

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None
