"""The Hugging Face hub stand-in as its own process, serving one repo from a directory on disk.

Usage: python -m bench.hub_server PORT REPO_ID DIR
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from aiohttp import web

from tests.fakes.hub import Hub


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    port, repo_id, root = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    hub = Hub()
    small = {p.name: p.read_bytes() for p in root.iterdir() if p.stat().st_size < 1024 * 1024}
    repo = hub.add(repo_id, small)
    repo.disk = {p.name: (p, sha256_of(p)) for p in root.iterdir() if p.name not in small}
    web.run_app(hub.app(), host="127.0.0.1", port=port, access_log=None, print=None)
