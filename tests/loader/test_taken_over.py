"""A loader that comes back after another completed its model (it froze past its lease) leaves nothing behind:
the complete files stay as the other loader wrote them, and what it began writing since goes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from model_manager.core.ids import content_key, converted
from model_manager.objectstore.base import Partial
from model_manager.objectstore.local import LocalStore
from model_manager.proto.llmariner.models.server import v1 as pb
from tests.conftest import FakeClock
from tests.fakes.hub import DEFAULT_COMMIT
from tests.helpers import WORKER, Api, hf_prefix
from tests.loader.conftest import Harness

MODEL = "org/big"
FILES = {"config.json": b"{}", "model.safetensors": bytes(range(256)) * 4096}  # 1 MiB: 16 chunks of the hub's


class GatedStore(LocalStore):
    """Holds the first write of the weights between its check of what is stored and its first byte: the moment a
    frozen loader stopped at."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.waiting = asyncio.Event()
        self.gate = asyncio.Event()
        self.held = False

    async def upload(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        before_commit: Callable[[], None] | None = None,
        resume: Partial | None = None,
    ) -> None:
        if key.endswith("model.safetensors") and not self.held:  # the first write only
            self.held = True
            self.waiting.set()
            await self.gate.wait()
        await super().upload(key, chunks, before_commit, resume)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_loader_back_after_another_finished_clears_what_it_began(
    harness: Harness, api: Api, clock: FakeClock, tmp_path: Path
) -> None:
    root = tmp_path / "gated"
    store = GatedStore(root)
    harness.hub.add(MODEL, dict(FILES), throttle=0.1)  # 1.6 s for the weights: longer than a report interval
    await api.request_base(MODEL)
    # Its reports come every second: it wakes and writes before its next one tells it that it lost the model.
    first = asyncio.create_task(replace(harness, store=store).drain(progressInterval="1s"))
    await asyncio.wait_for(store.waiting.wait(), 10)

    # Meanwhile its lease runs out; a second loader claims the model and completes it.
    prefix = hf_prefix(MODEL)
    clock.advance(61)
    claim = await api.acquire_base("loader-2")
    assert claim.attempt == 2
    for name, data in FILES.items():
        await store.upload(f"{prefix}/{name}", _chunks(data))
    files = [pb.ModelFile(path=n, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for n, d in FILES.items()]
    await api.worker.create_base_model(
        WORKER,
        pb.CreateBaseModelRequest(
            id=converted(MODEL),
            path=prefix,
            formats=[pb.ModelFormat.HUGGING_FACE],
            content_key=content_key("hugging-face", MODEL, DEFAULT_COMMIT),
            revision=DEFAULT_COMMIT,
            loading_model_id=MODEL,
            attempt=claim.attempt,
            files=files,
        ),
    )
    await api.base_status(MODEL, attempt=claim.attempt, success=pb.UpdateBaseModelLoadingStatusRequestSuccess())
    store.gate.set()  # the first loader wakes and begins writing the weights again

    await asyncio.wait_for(first, 10)  # its next report is refused: it stops
    assert list(root.rglob("*.part")) == []
    assert {p.name: p.read_bytes() for p in (root / prefix).iterdir()} == FILES
    assert (await api.get(converted(MODEL))).loading_status == pb.ModelLoadingStatus.SUCCEEDED
