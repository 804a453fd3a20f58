"""Id rules and model-config masks (pure functions)."""

from __future__ import annotations

import pytest

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config, validate


def test_hugging_face_refs() -> None:
    assert ids.parse_hugging_face("org/name") == ids.HuggingFaceRef("org/name", "", "")
    assert ids.parse_hugging_face("org/name/f.gguf@main") == ids.HuggingFaceRef("org/name", "f.gguf", "main")
    assert ids.converted("org/name/f.gguf") == "org-name-f.gguf"


def test_id_rules_raise_a_plain_value_error_and_the_service_its_own_error() -> None:
    # The loader and the config call the pure rules; only the service speaks in service errors.
    with pytest.raises(ids.InvalidId, match="revision after '@' is empty") as raised:
        ids.parse_hugging_face("org/name@")
    assert isinstance(raised.value, ValueError) and not isinstance(raised.value, InvalidArgument)
    with pytest.raises(InvalidArgument, match="revision after '@' is empty"):
        validate.parse_hugging_face("org/name@")


def test_random_suffix_is_url_safe() -> None:
    s = ids.random_suffix()
    assert len(s) == 10 and all(c.isalnum() or c in "-_" for c in s)
    assert len({ids.random_suffix() for _ in range(50)}) == 50


def test_mask_on_a_parent_then_a_child() -> None:
    current = model_config.default_config()
    update = pb.ModelConfig(
        runtime_config=pb.ModelConfigRuntimeConfig(replicas=2),
        cluster_allocation_policy=pb.ModelConfigClusterAllocationPolicy(allowed_cluster_ids=["c1"]),
    )
    out = model_config.apply_mask(
        current, update, ["config.cluster_allocation_policy", "config.runtime_config.replicas"]
    )
    assert out.runtime_config.replicas == 2  # type: ignore[union-attr]
    assert out.runtime_config.resources.gpu == 1  # type: ignore[union-attr]  # untouched
    assert out.cluster_allocation_policy.allowed_cluster_ids == ["c1"]  # type: ignore[union-attr]
    assert out.cluster_allocation_policy.enable_on_demand_allocation is False  # type: ignore[union-attr]
    assert current == model_config.default_config()  # the input is not modified


def test_mask_clearing_runtime_config_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="runtime_config is required"):
        model_config.apply_mask(model_config.default_config(), pb.ModelConfig(), ["config.runtime_config"])


def test_config_round_trips_through_storage_bytes() -> None:
    c = model_config.default_config()
    assert model_config.decode(model_config.encode(c)) == c
    assert model_config.decode(None) == c
