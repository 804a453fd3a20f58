"""S3-compatible object store through aiobotocore. Credentials come from the usual AWS environment or profile.

Uploads are multipart against the raw API (create, upload parts, complete). An upload that fails because its source
broke off or its loader stopped stays open, so that the next write of the key continues after its stored parts
(ListParts); a refused object is aborted, and `clear_unfinished` aborts what is left. One budget of
`parts_in_flight` part buffers is shared by every upload of this store, so memory stays at parts_in_flight x
part_size however many files move at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import UNSIGNED
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from model_manager.config import S3Config
from model_manager.core.aio import first_error
from model_manager.objectstore.base import ObjectInfo, ObjectStore, Partial, StoreError, check_key
from model_manager.objectstore.budget import PartBudget, Slot
from model_manager.objectstore.streams import PartReader

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
READ_CHUNK = 1024 * 1024

# S3 error codes a retry may get past; any other code is final.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "500",
        "502",
        "503",
        "504",
    }
)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """botocore's errors as the store's own StoreError, so callers classify them by type, not by name."""
    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        raise StoreError(f"S3 error {code} {what}: {e}", code, transient=code in _TRANSIENT_CODES) from e
    except (BotoConnectionError, HTTPClientError) as e:
        raise StoreError(f"S3 unreachable {what}: {e}", type(e).__name__, transient=True) from e


def _no_expect_continue(request: Any, **_: Any) -> None:
    """Drop botocore's `Expect: 100-continue`: over aiohttp it made every part wait for an interim response that
    S3-compatible servers may never send (measured: a 256 MiB upload to moto in 3.2 s with it, 1.8 s without).
    Parts are sent whole either way; the only loss is not learning of a refusal before the body is sent."""
    if "Expect" in request.headers:
        del request.headers["Expect"]


async def _content_md5(part: io.BytesIO) -> str:
    """The Content-MD5 header of a part, hashed in a thread (hashlib lets go of the GIL on large buffers)."""

    def digest() -> str:
        with part.getbuffer() as view:
            return base64.b64encode(hashlib.md5(view, usedforsecurity=False).digest()).decode()

    return await asyncio.to_thread(digest)


class S3Store(ObjectStore):
    def __init__(self, cfg: S3Config, anonymous: bool = False) -> None:
        self.cfg = cfg
        self.anonymous = anonymous  # unsigned requests, for public source buckets
        self.bucket = cfg.bucket
        self.part_size = cfg.part_size
        self.budget = PartBudget(cfg.parts_in_flight)
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        # Created on first use: the server starts even while the store is unreachable.
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                session = get_session()
                kwargs: dict[str, Any] = {
                    "region_name": self.cfg.region or None,
                    "config": AioConfig(
                        retries={"max_attempts": 5, "mode": "standard"},
                        max_pool_connections=max(32, self.cfg.parts_in_flight * 2),
                        signature_version=UNSIGNED if self.anonymous else None,
                        # Every file is sha256-checked end to end by the loader; a CRC32 per part on top only
                        # costs event-loop time.
                        request_checksum_calculation="when_required",
                        # botocore would hash every body with sha256 on the event loop to sign it (over plain HTTP
                        # always, over HTTPS without a checksum header): 64 MiB parts stalled the loop for tens of
                        # milliseconds each. Uploads carry a Content-MD5 computed in a thread instead; the header is
                        # signed and the server checks the body against it.
                        s3={"payload_signing_enabled": False},
                    ),
                    "verify": not self.cfg.insecure_skip_verify,
                }
                if self.cfg.endpoint_url:
                    kwargs["endpoint_url"] = self.cfg.endpoint_url
                if self.cfg.assume_role_arn:
                    kwargs.update(await self._assumed_credentials(session))
                self._client = await stack.enter_async_context(session.create_client("s3", **kwargs))
                self._client.meta.events.register("before-sign.s3", _no_expect_continue)
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

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if length == 0:
            return
        s3 = await self.client()
        with _translated(f"reading {key}"):
            end = "" if length is None else str(offset + length - 1)
            ranged = {"Range": f"bytes={offset}-{end}"} if offset or end else {}
            resp = await s3.get_object(Bucket=self.bucket, Key=check_key(key), **ranged)
            async with resp["Body"] as body:
                while chunk := await body.read(READ_CHUNK):
                    yield chunk

    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        before_commit: Callable[[], None] | None = None,
        resume: Partial | None = None,
    ) -> None:
        check_key(key)
        s3 = await self.client()
        reader = PartReader(chunks)
        stored: dict[int, str] = {}
        with _translated(f"uploading {key}"), await self.budget.take() as slot:
            first, length = await reader.read(self.part_size)
            if resume is not None:
                upload_id, stored = resume.handle
            elif length < self.part_size:  # the whole object fits in one request
                if before_commit is not None:
                    before_commit()
                await s3.put_object(Bucket=self.bucket, Key=key, Body=first, ContentMD5=await _content_md5(first))
                return
            else:
                upload_id = (await s3.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
            first_slot = slot.hand_over()
        # Handed over in a list that the send task empties: a local here (or a parameter there) would keep the
        # part's buffer alive until the whole file is sent, one part beyond the budget (found with tracemalloc).
        pending = [first]
        del first
        with _translated(f"uploading {key}"):
            await self._multipart(s3, key, upload_id, pending, first_slot, reader, before_commit, dict(stored))

    async def _multipart(
        self,
        s3: Any,
        key: str,
        upload_id: str,
        pending: list[io.BytesIO],
        first_slot: Slot,
        reader: PartReader,
        before_commit: Callable[[], None] | None,
        etags: dict[int, str],
    ) -> None:
        """Send the parts after those in `etags` (the parts an interrupted upload stored) and complete."""
        resumed = len(etags)

        async def send(number: int, data: io.BytesIO) -> None:
            md5 = await _content_md5(data)
            resp = await s3.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ContentMD5=md5
            )
            etags[number] = resp["ETag"]

        # A failure while sending leaves the upload open: the parts stored so far are for the next write of this
        # key to continue from (`partial`).
        try:
            async with asyncio.TaskGroup() as tg:
                number = resumed + 1
                first = pending.pop()
                with first.getbuffer() as view:
                    has_bytes = view.nbytes > 0
                if has_bytes:  # empty only when a resumed upload had every byte already
                    first_slot.release_when_done(tg.create_task(send(number, first)))
                else:
                    first_slot.release()
                del first
                length = self.part_size
                source_error: Exception | None = None
                while length == self.part_size:
                    with await self.budget.take() as slot:
                        try:
                            data, length = await reader.read(self.part_size)
                        except Exception as e:
                            # The source broke off: the parts already read are still sent (the task group waits for
                            # them), so that the next attempt continues after them.
                            source_error = e
                            break
                        if length:
                            number += 1
                            slot.release_when_done(tg.create_task(send(number, data)))
                        del data  # else it keeps this part alive while the next one is read
        except BaseExceptionGroup as group:
            # The source's or S3's own error, not the task group's wrapper: callers decide on a retry by it.
            raise first_error(group) from group
        if source_error is not None:
            raise source_error
        try:
            if before_commit is not None:
                before_commit()
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Refused (or failed to complete): shielded, so that a cancelled load still releases the parts.
            await asyncio.shield(self._abort(s3, key, upload_id))
            raise

    async def presigned_get(self, key: str, expires: float) -> str | None:
        s3 = await self.client()
        with _translated(f"signing a URL for {key}"):
            url = await s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=max(1, int(expires))
            )
        return str(url)

    async def stat(self, key: str) -> ObjectInfo | None:
        s3 = await self.client()
        try:
            with _translated(f"reading the size of {key}"):
                head = await s3.head_object(Bucket=self.bucket, Key=check_key(key))
        except StoreError as e:
            if e.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(key=key, size=int(head["ContentLength"]), etag=str(head.get("ETag", "")))

    async def partial(self, key: str) -> Partial | None:
        """The open upload of `key` with the longest run of whole parts from part 1 (only those can be continued:
        a file's parts are all part_size but its last). Other open uploads of the key are aborted."""
        s3 = await self.client()
        best: Partial | None = None
        with _translated(f"listing unfinished uploads of {key}"):
            uploads = await s3.list_multipart_uploads(Bucket=self.bucket, Prefix=check_key(key))
            for upload in uploads.get("Uploads", []):
                if upload["Key"] != key:
                    continue
                etags = await self._whole_parts(s3, key, upload["UploadId"])
                candidate = Partial(key, len(etags) * self.part_size, False, (upload["UploadId"], etags))
                if best is None or candidate.size > best.size:
                    if best is not None:
                        await self._abort(s3, key, best.handle[0])
                    best = candidate
                else:
                    await self._abort(s3, key, upload["UploadId"])
        if best is not None and not best.size:
            await self._abort(s3, key, best.handle[0])
            return None
        return best

    async def _whole_parts(self, s3: Any, key: str, upload_id: str) -> dict[int, str]:
        """Parts 1..k of an open upload, each exactly part_size, with their ETags (a gap or a short part ends it)."""
        sizes: dict[int, tuple[int, str]] = {}
        paginator = s3.get_paginator("list_parts")
        async for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
            for p in page.get("Parts", []):
                sizes[int(p["PartNumber"])] = (int(p["Size"]), str(p["ETag"]))
        etags: dict[int, str] = {}
        while (n := len(etags) + 1) in sizes and sizes[n][0] == self.part_size:
            etags[n] = sizes[n][1]
        return etags

    async def _abort(self, s3: Any, key: str, upload_id: str) -> None:
        # The original error matters more than a failed abort; a bucket lifecycle rule is the backstop.
        with contextlib.suppress(Exception):
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def clear_unfinished(self, prefix: str, keep: Collection[str] = ()) -> int:
        s3 = await self.client()
        aborted = 0
        with _translated(f"listing unfinished uploads under {prefix}"):
            paginator = s3.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if any(upload["Key"] == k or upload["Key"].startswith(k.rstrip("/") + "/") for k in keep):
                        continue
                    await self._abort(s3, upload["Key"], upload["UploadId"])
                    aborted += 1
        return aborted

    async def delete_model_files(self, path: str, keep: Collection[str] = ()) -> int:
        # Uploads a failed or interrupted load left open under the path go too (they are billed while open).
        removed = await super().delete_model_files(path, keep)
        await self.clear_unfinished(path.rstrip("/") + "/", keep)
        return removed

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        s3 = await self.client()
        out: list[ObjectInfo] = []
        with _translated(f"listing {prefix}"):
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(
                    ObjectInfo(key=o["Key"], size=o["Size"], etag=o.get("ETag", "")) for o in page.get("Contents", [])
                )
        return out

    async def delete_keys(self, keys: list[str]) -> None:
        """Delete every batch it can, then report the first failure: one bad batch must not keep the rest."""
        s3 = await self.client()
        failures: list[StoreError] = []
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
            try:
                with _translated("deleting objects"):
                    resp = await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except StoreError as e:
                failures.append(e)
                continue
            for error in resp.get("Errors", []):
                code = str(error.get("Code", ""))
                message = f"S3 refused to delete {error.get('Key')}: {error.get('Message')}"
                failures.append(StoreError(message, code, transient=code in _TRANSIENT_CODES))
        if failures:
            raise failures[0]

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None
