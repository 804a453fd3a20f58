"""What a Model says is defined once (service.convert.model_fields); every encoding of it says the same, and
says all of it."""

from __future__ import annotations

import orjson
import pytest

from model_manager.api.json_codec import to_json
from model_manager.api.wire import JSON, PROTO
from model_manager.core.files import StoredFile
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config
from model_manager.service.convert import model_fields, to_model
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


def _response(page: Page) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        object="list", data=[to_model(r) for r in page.records], has_more=page.has_more, total_items=page.total
    )


@pytest.mark.parametrize("rec", RECORDS.values(), ids=RECORDS.keys())
def test_json_is_byte_for_byte_what_the_message_writes(rec: ModelRecord) -> None:
    """The JSON converters read off the descriptor write what the descriptor walk writes of the message."""
    assert JSON.model(rec) == orjson.dumps(to_json(to_model(rec)))


@pytest.mark.parametrize("has_more", [False, True])
def test_pages_say_what_their_models_say(has_more: bool) -> None:
    page = Page(list(RECORDS.values()), has_more, 123)
    assert JSON.page(page) == orjson.dumps(to_json(_response(page)))
    assert pb.ListModelsResponse.parse(PROTO.page(page)) == _response(page)
    empty = Page([], False, 0)
    assert JSON.page(empty) == orjson.dumps(to_json(_response(empty)))
    assert pb.ListModelsResponse.parse(PROTO.page(empty)) == _response(empty)


FULL = _record(
    Kind.FINE_TUNED,
    model_id="ft:google-gemma-2b:fun",
    project_id="p1",
    base_model_id="google-gemma-2b",
    source_repository=pb.SourceRepository.OBJECT_STORE.value,
    loading_status=LoadingStatus.LOADING,
    loading_failure_reason="earlier: 503",
    loading_status_message="downloaded 1.0 GiB of 4.0 GiB",
    formats=(pb.ModelFormat.HUGGING_FACE.value,),
    activation_status=Activation.ACTIVE,
    config=bytes(custom),
    revision="0123abcd",
    files=(StoredFile("adapter.safetensors", 12345, "ab" * 32),),
    progress_bytes_done=1 << 30,
    progress_bytes_total=4 << 30,
    progress_files_done=1,
    progress_files_total=3,
    attempt_log=(FailedAttempt(1, "hub: 503", 1_700_000_100),),
    metadata='{"architecture":"LlamaForCausalLM","parameter_count":8030261248,"quantization":"q4",'
    '"dtype":"BF16","context_length":131072,"total_bytes":16060556376,"license":"llama3.1"}',
)


def test_every_field_of_the_message_is_given() -> None:
    """A field added to the proto but not to model_fields fails here: a record that sets everything sets every
    field of the message."""
    unset = {f.name for f in pb.Model.DESCRIPTOR.fields} - set(model_fields(FULL))
    assert not unset


def test_a_model_says_what_its_record_holds() -> None:
    assert to_model(FULL) == pb.Model(
        id="ft:google-gemma-2b:fun",
        created=1_700_000_000,
        object="model",
        owned_by="user",
        loading_status=pb.ModelLoadingStatus.LOADING,
        source_repository=pb.SourceRepository.OBJECT_STORE,
        loading_failure_reason="earlier: 503",
        loading_status_message="downloaded 1.0 GiB of 4.0 GiB",
        formats=[pb.ModelFormat.HUGGING_FACE],
        is_base_model=False,
        base_model_id="google-gemma-2b",
        activation_status=pb.ActivationStatus.ACTIVE,
        config=custom,
        project=pb.Project(id="p1"),
        revision="0123abcd",
        files=[pb.ModelFile(path="adapter.safetensors", size=12345, sha256="ab" * 32)],
        loading_progress=pb.LoadingProgress(bytes_done=1 << 30, bytes_total=4 << 30, files_done=1, files_total=3),
        loading_attempts=[pb.LoadingAttempt(attempt=1, reason="hub: 503", failed_at=1_700_000_100)],
        metadata=pb.ModelMetadata(
            architecture="LlamaForCausalLM",
            parameter_count=8030261248,
            quantization="q4",
            dtype="BF16",
            context_length=131072,
            total_bytes=16060556376,
            license="llama3.1",
        ),
    )
    # A base model with nothing optional: no project, no progress, no metadata, the default config.
    plain = to_model(_record())
    assert (plain.owned_by, plain.is_base_model, plain.project, plain.loading_progress, plain.metadata) == (
        "system",
        True,
        None,
        None,
        None,
    )
    assert plain.config == model_config.default_config()
