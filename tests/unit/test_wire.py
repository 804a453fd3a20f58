"""The read paths' wire forms, written straight from records, say exactly what the message path says."""

from __future__ import annotations

import orjson
import pytest

from model_manager.api.json_codec import to_json
from model_manager.api.wire import JSON, PROTO
from model_manager.core.files import StoredFile
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config
from model_manager.service.convert import to_model, to_response
from model_manager.store.listing import Page
from model_manager.store.records import Activation, FailedAttempt, Kind, LoadingStatus, ModelRecord


def _record(kind: Kind = Kind.BASE, **changes: object) -> ModelRecord:
    rec = ModelRecord(
        kind=kind,
        id=7,
        tenant_id="t",
        project_id="",
        model_id="google-gemma-2b",
        path="models/base-models/google/gemma-2b",
        source_repository=pb.SourceRepository.HUGGING_FACE.value,
        loading_status=LoadingStatus.SUCCEEDED,
        loading_failure_reason="",
        loading_status_message="",
        lease_holder=None,
        lease_expires_at=None,
        attempt=0,
        activation_status=Activation.INACTIVE,
        config=None,
        created_at=1_700_000_000,
        updated_at=1_700_000_001,
    )
    for name, value in changes.items():
        setattr(rec, name, value)
    return rec


custom = pb.ModelConfig(
    runtime_config=pb.ModelConfigRuntimeConfig(replicas=3, extra_args=["--max-model-len", "4096"]),
    cluster_allocation_policy=pb.ModelConfigClusterAllocationPolicy(allowed_cluster_ids=["c1", "c2"]),
)

RECORDS = {
    "base, default config": _record(),
    "base, stored config, several formats": _record(
        config=model_config.encode(model_config.default_config()),
        formats=(pb.ModelFormat.HUGGING_FACE.value, pb.ModelFormat.GGUF.value),
        revision="0123abcd",
    ),
    "project-scoped, active, custom config": _record(
        project_id="p1", activation_status=Activation.ACTIVE, config=bytes(custom)
    ),
    "loading, with a status message": _record(
        loading_status=LoadingStatus.LOADING, loading_status_message="downloading model.safetensors (12%)"
    ),
    "loading, with progress numbers": _record(
        loading_status=LoadingStatus.LOADING,
        loading_status_message="downloaded 1.0 GiB of 4.0 GiB (1/3 files)",
        progress_bytes_done=1 << 30,
        progress_bytes_total=4 << 30,
        progress_files_done=1,
        progress_files_total=3,
    ),
    "failed, with a reason": _record(loading_status=LoadingStatus.FAILED, loading_failure_reason="401 from the hub"),
    "failed after attempts, with their reasons": _record(
        loading_status=LoadingStatus.FAILED,
        loading_failure_reason='hub: 503 "busy" (gave up after 2 attempts)',
        attempt=2,
        attempt_log=(FailedAttempt(1, "hub: 503", 1_700_000_100), FailedAttempt(2, 'hub: 503 "busy"', 1_700_000_200)),
    ),
    "fine-tuned with files": _record(
        Kind.FINE_TUNED,
        model_id="ft:google-gemma-2b:fun",
        project_id="p1",
        base_model_id="google-gemma-2b",
        source_repository=pb.SourceRepository.OBJECT_STORE.value,
        files=(StoredFile("adapter.safetensors", 12345, "ab" * 32), StoredFile("config.json", 10, "cd" * 32)),
        is_published=True,
    ),
    "loaded, with metadata": _record(
        metadata='{"architecture":"LlamaForCausalLM","parameter_count":8030261248,"quantization":"",'
        '"dtype":"BF16","context_length":131072,"total_bytes":16060556376,"license":"llama3.1"}'
    ),
    "text that JSON must escape": _record(model_id='a"b\\c\u00e9\u4e2d', loading_status_message="line\nnext\t\u2028"),
}


@pytest.mark.parametrize("rec", RECORDS.values(), ids=RECORDS.keys())
def test_json_is_byte_for_byte_what_the_message_path_writes(rec: ModelRecord) -> None:
    assert JSON.model(rec) == orjson.dumps(to_json(to_model(rec)))


@pytest.mark.parametrize("rec", RECORDS.values(), ids=RECORDS.keys())
def test_protobuf_holds_what_the_message_path_holds(rec: ModelRecord) -> None:
    assert pb.Model.parse(PROTO.model(rec)) == to_model(rec)


@pytest.mark.parametrize("has_more", [False, True])
def test_pages_match_the_message_path(has_more: bool) -> None:
    page = Page(list(RECORDS.values()), has_more, 123)
    assert JSON.page(page) == orjson.dumps(to_json(to_response(page)))
    assert pb.ListModelsResponse.parse(PROTO.page(page)) == to_response(page)
    empty = Page([], False, 0)
    assert JSON.page(empty) == orjson.dumps(to_json(to_response(empty)))
    assert pb.ListModelsResponse.parse(PROTO.page(empty)) == to_response(empty)


def test_protobuf_is_byte_for_byte_when_fields_are_in_number_order() -> None:
    """betterproto writes fields in declaration order, upb in number order; they agree whenever
    loading_status_message (13, declared after 7) is empty, as on every loaded model."""
    rec = RECORDS["project-scoped, active, custom config"]
    assert PROTO.model(rec) == bytes(to_model(rec))
