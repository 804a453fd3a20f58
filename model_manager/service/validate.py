"""The id rules of `model_manager.core.ids`, raising the service's InvalidArgument instead of InvalidId."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from model_manager.core import ids, oci_ref
from model_manager.core.errors import InvalidArgument, PermissionDenied

P = ParamSpec("P")
T = TypeVar("T")


def _as_invalid_argument(rule: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(rule)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return rule(*args, **kwargs)
        except ids.InvalidId as e:
            raise InvalidArgument(e.message) from e

    return checked


check_id = _as_invalid_argument(ids.check_id)
require = _as_invalid_argument(ids.require)
parse_hugging_face = _as_invalid_argument(ids.parse_hugging_face)
check_ollama = _as_invalid_argument(ids.check_ollama)
check_suffix = _as_invalid_argument(ids.check_suffix)
check_s3_url = _as_invalid_argument(ids.check_s3_url)
check_object_path = _as_invalid_argument(ids.check_object_path)
check_text = _as_invalid_argument(ids.check_text)
check_content_key = _as_invalid_argument(ids.check_content_key)
check_gguf_type = _as_invalid_argument(ids.check_gguf_type)
parse_oci = _as_invalid_argument(oci_ref.parse_oci)


def check_registry(ref: oci_ref.OciRef, allowlist: tuple[str, ...], field: str) -> oci_ref.OciRef:
    """A reference whose registry the operator lets requests reach (oci.allowedRegistries)."""
    if not oci_ref.allowed(ref.registry, allowlist):
        raise PermissionDenied(
            f"{field}: the registry {ref.registry} is not one this service may reach (oci.allowedRegistries: "
            f"{', '.join(allowlist)})"
        )
    return ref
