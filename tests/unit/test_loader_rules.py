"""Pure loader rules: format detection, retry decisions, progress messages, part reading."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from model_manager.core.files import StoredFile
from model_manager.core.units import human_bytes
from model_manager.loader.errors import PermanentError, TransientError, classify, http_error
from model_manager.loader.formats import detect, is_client_artifact
from model_manager.loader.outcomes import ClaimedModel, Failed, Loaded, Report, Stopped
from model_manager.loader.progress import Progress
from model_manager.loader.retry import RetryPolicy
from model_manager.objectstore.base import StoreError
from model_manager.objectstore.streams import PartReader
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.proto.llmariner.models.server.v1 import ModelFormat


def test_detect_formats() -> None:
    assert detect(["config.json", "model.safetensors"]).formats == [ModelFormat.HUGGING_FACE]
    assert detect(["adapter_config.json"]).formats == [ModelFormat.HUGGING_FACE]
    assert detect(["blobs/sha256-1", "manifests/h/library/m/t"]).formats == [ModelFormat.OLLAMA]
    assert detect(["x/tensorrt_llm/config.pbtxt"]).formats == [ModelFormat.NVIDIA_TRITON]
    one = detect(["config.json", "m.gguf"])
    assert (one.formats, one.gguf_file) == ([ModelFormat.HUGGING_FACE, ModelFormat.GGUF], "m.gguf")
    split = detect(["b.gguf", "a.gguf", "README.md"])
    assert (split.formats, split.split_gguf) == ([ModelFormat.GGUF], ["a.gguf", "b.gguf"])
    with pytest.raises(PermanentError):  # only a config at the model's root counts
        detect(["sub/config.json", "m.safetensors"])


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ([], "no files downloaded"),
        (["README.md"], "no model format found"),
        (["config.json", "a.gguf", "b.gguf"], "GGUF files alongside another model format"),
    ],
)
def test_detect_failures(paths: list[str], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        detect(paths)


def test_client_artifacts_are_never_model_files() -> None:
    assert is_client_artifact(".cache/huggingface/download/x.metadata")
    assert is_client_artifact("model.safetensors.lock") and is_client_artifact("a/.locks/x")
    assert not is_client_artifact("model.safetensors")


def test_retry_policy_decides() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=1, max_delay=3, jitter=0)
    transient = TransientError("reset")
    assert [policy.delay(a, transient) for a in (1, 2, 3)] == [1, 2, None]
    assert policy.delay(1, PermanentError("404")) is None
    assert RetryPolicy(base_delay=1, max_delay=100, jitter=0.5).delay(1, transient, rand=1.0) == 1.5
    assert RetryPolicy(max_attempts=10, base_delay=1, max_delay=5, jitter=0).delay(9, transient) == 5


def test_errors_are_sorted() -> None:
    assert isinstance(http_error(503, "x"), TransientError) and isinstance(http_error(429, "x"), TransientError)
    assert isinstance(http_error(404, "x"), PermanentError) and isinstance(http_error(401, "x"), PermanentError)
    assert isinstance(classify(ConnectionResetError("peer")), TransientError)
    assert isinstance(classify(aiohttp.ServerDisconnectedError()), TransientError)
    assert isinstance(classify(aiohttp.ClientPayloadError("cut short")), TransientError)
    assert isinstance(classify(StoreError("S3 error SlowDown", "SlowDown", transient=True)), TransientError)
    assert isinstance(classify(StoreError("S3 error NoSuchBucket", "NoSuchBucket", transient=False)), PermanentError)
    # Sorted by type, not by name: an unrelated class that merely shares a name is not retried.
    ClientPayloadError = type("ClientPayloadError", (Exception,), {})
    assert isinstance(classify(ClientPayloadError("x")), PermanentError)
    assert isinstance(classify(ValueError("bad")), PermanentError)


def test_progress_message() -> None:
    now = [0.0]
    p = Progress(total_bytes=int(4.9 * 1024**3), total_files=12, clock=lambda: now[0])
    p.add_bytes(int(1.2 * 1024**3))
    for _ in range(3):
        p.file_done()
    now[0] = 14.5
    msg = p.message()
    assert msg.startswith("downloaded 1.2 GiB of 4.9 GiB (3/12 files), 84.7 MiB/s, about ")
    assert msg.endswith(" s left")
    assert human_bytes(512) == "512 B"


async def _chunks(*parts: bytes):  # type: ignore[no-untyped-def]
    for p in parts:
        yield p


async def test_part_reader_carries_what_straddles_a_boundary() -> None:
    reader = PartReader(_chunks(b"abc", b"defgh", b"", b"ij"))
    parts = [await reader.read(4) for _ in range(4)]
    assert [(p.read(), n) for p, n in parts] == [(b"abcd", 4), (b"efgh", 4), (b"ij", 2), (b"", 0)]


def test_each_outcome_is_reported_as_one_status_update() -> None:
    files = [StoredFile("config.json", 2, "ab")]
    assert Report.of(Loaded(files), "l1") == Report(success=True, files=files)
    assert Report.of(Failed("no model format found"), "l1") == Report(failure="no model format found")
    stopped = Report.of(Stopped(), "l1")
    assert stopped.release and "loader l1 stopped" in stopped.message and not stopped.success


async def test_a_claim_reports_with_the_request_of_its_kind_fenced_by_its_attempt() -> None:
    sent: list[object] = []

    class Worker:
        async def update_base_model_loading_status(self, message: object) -> None:
            sent.append(message)

        async def update_model_loading_status(self, message: object) -> None:
            sent.append(message)

    worker: Any = Worker()
    await ClaimedModel("org-a", 3, is_base=True, project_id="p").send(worker, Report(failure="broken"))
    await ClaimedModel("ft:a:b", 2, is_base=False).send(worker, Report(success=True, files=[StoredFile("w", 1, "c")]))
    base, fine_tuned = sent
    assert isinstance(base, pb.UpdateBaseModelLoadingStatusRequest)
    assert (base.id, base.attempt, base.project_id, base.success) == ("org-a", 3, "p", None)
    assert base.failure is not None and base.failure.reason == "broken"
    assert isinstance(fine_tuned, pb.UpdateModelLoadingStatusRequest)
    assert (fine_tuned.id, fine_tuned.attempt, fine_tuned.failure) == ("ft:a:b", 2, None)
    assert fine_tuned.success is not None and [f.path for f in fine_tuned.files] == ["w"]
