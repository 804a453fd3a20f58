"""Model config defaults, validation and field-mask updates."""

from __future__ import annotations

import functools
from typing import Any

import betterproto2

from model_manager.core.errors import InvalidArgument
from model_manager.proto.llmariner.models.server.v1 import (
    ModelConfig,
    ModelConfigClusterAllocationPolicy,
    ModelConfigRuntimeConfig,
    ModelConfigRuntimeConfigResources,
)

UPDATABLE_PATHS = frozenset(
    {
        "config",
        "config.runtime_config",
        "config.runtime_config.replicas",
        "config.runtime_config.resources",
        "config.runtime_config.resources.gpu",
        "config.runtime_config.extra_args",
        "config.cluster_allocation_policy",
        "config.cluster_allocation_policy.allowed_cluster_ids",
        "config.cluster_allocation_policy.enable_on_demand_allocation",
    }
)


def default_config() -> ModelConfig:
    return ModelConfig(
        runtime_config=ModelConfigRuntimeConfig(resources=ModelConfigRuntimeConfigResources(gpu=1), replicas=1),
        cluster_allocation_policy=ModelConfigClusterAllocationPolicy(enable_on_demand_allocation=True),
    )


def validate(config: ModelConfig) -> ModelConfig:
    rc = config.runtime_config
    if rc is None:
        raise InvalidArgument("config.runtime_config is required")
    if rc.replicas <= 0:
        raise InvalidArgument(f"config.runtime_config.replicas must be greater than 0, got {rc.replicas}")
    if rc.resources is not None and rc.resources.gpu < 0:
        raise InvalidArgument(f"config.runtime_config.resources.gpu must not be negative, got {rc.resources.gpu}")
    return config


def encode(config: ModelConfig) -> bytes:
    return bytes(config)


def decode(data: bytes | None) -> ModelConfig:
    """A fresh config, safe for the caller to change."""
    return ModelConfig.parse(data) if data else default_config()


@functools.lru_cache(maxsize=1024)
def decode_shared(data: bytes | None) -> ModelConfig:
    """A config shared between callers that only read it (listings): most models carry one of a few configs,
    and parsing them again for every row of every page dominated the cost of a listing."""
    return decode(data)


def _copy(value: Any) -> Any:
    if isinstance(value, betterproto2.Message):
        return type(value).parse(bytes(value))
    if isinstance(value, list):
        return list(value)
    return value


def _child(msg: betterproto2.Message, name: str) -> betterproto2.Message:
    """The sub-message `name` of `msg`, created empty when unset."""
    value = getattr(msg, name)
    if value is None:
        value = type(msg)._betterproto.cls_by_field[name]()  # type: ignore[arg-type]
        setattr(msg, name, value)
    return value  # type: ignore[no-any-return]


# llmariner's `llma models update --disable-on-demand-allocation` sends this path without its "config." prefix
# (upstream refuses it); read as the path it means, so that flag works against this server.
_ON_DEMAND = "cluster_allocation_policy.enable_on_demand_allocation"
_LLMA_PATHS = {_ON_DEMAND: f"config.{_ON_DEMAND}"}


def normalize_mask(paths: list[str]) -> list[str]:
    return [_LLMA_PATHS.get(p, p) for p in paths]


def check_mask(paths: list[str]) -> None:
    if not paths:
        raise InvalidArgument("update_mask is required: list the fields to change, e.g. config.runtime_config.replicas")
    for path in paths:
        if path not in UPDATABLE_PATHS:
            raise InvalidArgument(f"update_mask path {path!r} cannot be updated; only config and its fields can")


def apply_mask(current: ModelConfig, update: ModelConfig | None, paths: list[str]) -> ModelConfig:
    """Copy the masked paths (relative to the model, so starting with "config") from `update` into `current`."""
    check_mask(paths)
    result = _copy(current)
    source: Any = update if update is not None else ModelConfig()
    for path in sorted(paths, key=len):  # a parent path first, so a child path can refine it
        segments = path.split(".")[1:]
        if not segments:
            result = _copy(source)
            continue
        target, src = result, source
        for seg in segments[:-1]:
            target = _child(target, seg)
            src = getattr(src, seg) if src is not None else None
        last = segments[-1]
        value = getattr(src, last) if src is not None else None
        if value is None:
            value = type(target)._betterproto.default_gen[last]()
        setattr(target, last, _copy(value))
    return validate(result)
