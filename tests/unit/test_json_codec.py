"""The REST JSON codec against the wire contract's JSON rules."""

from __future__ import annotations

import pytest

from model_manager.api.json_codec import from_json, from_query, to_json
from model_manager.core.errors import InvalidArgument
from model_manager.proto.google.protobuf import FieldMask
from model_manager.proto.llmariner.models.server import v1 as pb


def test_model_is_written_with_proto_names_defaults_enum_names_and_numeric_int64() -> None:
    out = to_json(pb.Model(id="m", created=1_700_000_000_123, loading_status=pb.ModelLoadingStatus.SUCCEEDED))
    assert out["created"] == 1_700_000_000_123  # a number, not grpc-gateway's string
    assert out["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED"
    assert out["activation_status"] == "ACTIVATION_STATUS_UNSPECIFIED"
    assert out["formats"] == [] and out["is_base_model"] is False and out["owned_by"] == ""
    assert "config" not in out and "project" not in out  # unset messages are omitted, not null


def test_nested_messages_and_repeated_enums() -> None:
    m = pb.Model(formats=[pb.ModelFormat.GGUF, pb.ModelFormat.OLLAMA], config=pb.ModelConfig())
    out = to_json(m)
    assert out["formats"] == ["MODEL_FORMAT_GGUF", "MODEL_FORMAT_OLLAMA"]
    assert out["config"] == {}


def test_field_mask_is_a_comma_separated_string_both_ways() -> None:
    req = pb.UpdateModelRequest(update_mask=FieldMask(paths=["config.runtime_config.replicas", "config"]))
    assert to_json(req)["update_mask"] == "config.runtime_config.replicas,config"
    back = from_json(pb.UpdateModelRequest, {"update_mask": "config.runtime_config.replicas,config"})
    assert back.update_mask.paths == ["config.runtime_config.replicas", "config"]  # type: ignore[union-attr]
    camel = from_json(pb.UpdateModelRequest, {"updateMask": "config.runtimeConfig.replicas"})
    assert camel.update_mask.paths == ["config.runtime_config.replicas"]  # type: ignore[union-attr]


def test_enums_are_read_by_name_or_number() -> None:
    by_name = from_json(pb.CreateModelRequest, {"source_repository": "SOURCE_REPOSITORY_OLLAMA"})
    by_number = from_json(pb.CreateModelRequest, {"source_repository": 3})
    assert by_name.source_repository == by_number.source_repository == pb.SourceRepository.OLLAMA


def test_int64_read_from_number_or_numeric_string() -> None:
    assert from_json(pb.Model, {"created": "42"}).created == 42
    assert from_json(pb.Model, {"created": 42}).created == 42


def test_unknown_fields_are_ignored_and_null_means_default() -> None:
    req = from_json(pb.CreateModelRequest, {"id": "x", "no_such_field": [1, 2], "suffix": None})
    assert (req.id, req.suffix) == ("x", "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": 5}, "id: must be a string"),
        ({"is_fine_tuned_model": "yes"}, "is_fine_tuned_model: must be true or false"),
        ({"source_repository": "NOPE"}, "source_repository: unknown value 'NOPE'"),
        ({"source_repository": 99}, "source_repository: unknown value 99"),
        ({"config": {"runtime_config": {"replicas": "many"}}}, "config.runtime_config.replicas: must be an integer"),
        ({"config": {"runtime_config": {"replicas": 2**31}}}, "out of range"),
        ({"config": {"runtime_config": {"extra_args": "x"}}}, "extra_args: must be a JSON array"),
        ({"config": []}, "config: must be a JSON object"),
        ([], "request body: must be a JSON object"),
    ],
)
def test_wrong_types_name_the_field(body: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        from_json(pb.CreateModelRequest, body)


def test_query_parameters() -> None:
    req = from_query(pb.ListModelsRequest, {"include_loading_models": "true", "limit": "5", "after": "m"})
    assert (req.include_loading_models, req.limit, req.after) == (True, 5, "m")
    with pytest.raises(InvalidArgument, match="limit: must be an integer"):
        from_query(pb.ListModelsRequest, {"limit": "ten"})
    with pytest.raises(InvalidArgument, match="include_loading_models"):
        from_query(pb.ListModelsRequest, {"include_loading_models": "maybe"})
