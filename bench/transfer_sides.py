"""The comparison points of the transfer benchmark, each run as its own process.

python -m bench.transfer_sides sequential HUB_URL REPO BUCKET S3_URL DIR   # snapshot_download, then boto3 upload_file
python -m bench.transfer_sides download HUB_URL REPO                        # download only, bytes discarded
python -m bench.transfer_sides upload S3_URL BUCKET DIR                     # upload only, our S3 store
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp


def sequential(hub: str, repo: str, bucket: str, s3_url: str, out: Path) -> None:
    import boto3
    from huggingface_hub import snapshot_download

    local = Path(snapshot_download(repo, local_dir=out, endpoint=hub))
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    for f in sorted(local.iterdir()):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"sequential/{f.name}")


async def download(hub: str, repo: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hub}/api/models/{repo}/tree/main?recursive=true") as r:
            entries = await r.json()
        for e in entries:
            if e["type"] == "file":
                async with http.get(f"{hub}/{repo}/resolve/main/{e['path']}") as r:
                    async for _ in r.content.iter_chunked(1024 * 1024):
                        pass


async def upload(s3_url: str, bucket: str, root: Path) -> None:
    from model_manager.config import S3Config
    from model_manager.objectstore.local import LocalStore
    from model_manager.objectstore.s3 import S3Store

    src = LocalStore(root)
    names = [p.name for p in await asyncio.to_thread(lambda: list(root.iterdir()))]
    store = S3Store(S3Config(endpoint_url=s3_url, region="us-east-1", bucket=bucket))
    try:
        await asyncio.gather(*(store.upload(f"upload-only/{n}", src.read(n)) for n in names))
    finally:
        await store.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sequential":
        sequential(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], Path(sys.argv[6]))
    elif mode == "download":
        asyncio.run(download(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(upload(sys.argv[2], sys.argv[3], Path(sys.argv[4])))
