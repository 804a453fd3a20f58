"""The two sides of the /hf benchmark, each run as its own process, each writing the file to disk.

python -m bench.hf_sides hf ENDPOINT REPO FILE OUT_DIR        # huggingface_hub's hf_hub_download through /hf
python -m bench.hf_sides http URL OUT_FILE                      # a plain HTTP GET of the same /hf URL (urllib)
python -m bench.hf_sides boto3 S3_URL BUCKET KEY OUT_FILE     # the same object straight from the store
"""

from __future__ import annotations

import sys
from pathlib import Path


def hf(endpoint: str, repo: str, filename: str, out: Path) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(repo, filename, endpoint=endpoint, local_dir=out)


def http(url: str, out: Path) -> None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r, out.open("wb") as f:
        while chunk := r.read(8 * 1024 * 1024):
            f.write(chunk)


def straight(s3_url: str, bucket: str, key: str, out: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with out.open("wb") as f:
        for chunk in body.iter_chunks(8 * 1024 * 1024):
            f.write(chunk)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "hf":
        hf(args[0], args[1], args[2], Path(args[3]))
    elif mode == "http":
        http(args[0], Path(args[1]))
    else:
        straight(args[0], args[1], args[2], Path(args[3]))
