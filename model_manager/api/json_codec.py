"""JSON for the REST front, as the wire contract writes it.

betterproto2's own to_dict/from_dict write int64 as strings, unset messages as null, and know nothing of the
FieldMask string form, so this small codec walks the protobuf descriptors instead:
- keys are proto field names (snake_case); lowerCamelCase names are accepted on input too;
- defaults are written, unset message fields are omitted; enums are written by name, read by name or number;
- 64-bit integers are written as numbers and read from numbers or numeric strings;
- a FieldMask is a comma-separated string of snake_case paths;
- unknown input keys are ignored; a wrong type or an unknown enum name raises InvalidArgument naming the field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2
from google.protobuf.descriptor import FieldDescriptor

from model_manager.core import ids
from model_manager.core.errors import InvalidArgument

M = TypeVar("M", bound=betterproto2.Message)

_FIELD_MASK = "google.protobuf.FieldMask"
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_MAX_INT_DIGITS = 21  # a sign and the 20 digits of the largest 64-bit value: anything longer is out of range
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def enum_names(enum_cls: Any) -> dict[int, str]:
    return enum_cls.betterproto_value_to_renamed_proto_names()  # type: ignore[no-any-return]


# ---- encoding ------------------------------------------------------------------------------------------------


Encoder = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _bytes(value: Any) -> str:
    return base64.b64encode(value).decode()


def _mask(value: Any) -> str:
    return ",".join(value.paths)


def _enum(enum_cls: Any) -> Encoder:
    names = enum_names(enum_cls)
    return lambda value: names.get(int(value), int(value))


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Encoder, bool, bool], ...]:
    """Per message class, once: (field name, value encoder, repeated, omit when unset). Responses are encoded on
    every request, so the descriptor walk is done here and not per value."""
    plan = []
    for f in cls.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        encoder: Encoder = _identity
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            encoder = _mask if f.message_type.full_name == _FIELD_MASK else to_json
        elif f.type == FieldDescriptor.TYPE_ENUM:
            encoder = _enum(cls._betterproto.cls_by_field[f.name])  # type: ignore[attr-defined]
        elif f.type == FieldDescriptor.TYPE_BYTES:
            encoder = _bytes
        omit_unset = f.type == FieldDescriptor.TYPE_MESSAGE and not f.is_repeated
        plan.append((f.name, encoder, bool(f.is_repeated), omit_unset))
    return tuple(plan)


def to_json(msg: betterproto2.Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, encode, repeated, omit_unset in _plan(type(msg)):
        value = getattr(msg, name)
        if repeated:
            out[name] = value if encode is _identity else [encode(v) for v in value]
        elif value is None and omit_unset:
            continue
        else:
            out[name] = encode(value)
    return out


# ---- decoding ------------------------------------------------------------------------------------------------


def from_json(cls: type[M], data: Any, path: str = "") -> M:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path or 'request body'}: must be a JSON object")
    kwargs: dict[str, Any] = {}
    for f in cls.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        key = f.name if f.name in data else f.json_name
        if key not in data or data[key] is None:
            continue
        where = f"{path}.{f.name}" if path else f.name
        value = data[key]
        if f.is_repeated:
            if not isinstance(value, list):
                raise InvalidArgument(f"{where}: must be a JSON array")
            kwargs[f.name] = [_decode_value(f, cls, v, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[f.name] = _decode_value(f, cls, value, where)
    return cls(**kwargs)


def _decode_value(f: FieldDescriptor, owner: type, value: Any, where: str) -> Any:
    t = f.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        sub = owner._betterproto.cls_by_field[f.name]  # type: ignore[attr-defined]
        if f.message_type.full_name == _FIELD_MASK:
            return sub(paths=_mask_paths(value, where))
        return from_json(sub, value, where)
    if t == FieldDescriptor.TYPE_ENUM:
        return _decode_enum(owner._betterproto.cls_by_field[f.name], value, where)  # type: ignore[attr-defined]
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise InvalidArgument(f"{where}: must be a string")
        try:
            return ids.check_text(value, where)
        except ids.InvalidId as e:
            raise InvalidArgument(e.message) from e
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{where}: must be true or false")
        return value
    if t in _INT_RANGES:
        return _decode_int(value, where, *_INT_RANGES[t])
    if t in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(f"{where}: must be a number")
        return float(value)
    if t == FieldDescriptor.TYPE_BYTES:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise InvalidArgument(f"{where}: must be base64") from e
    raise InvalidArgument(f"{where}: unsupported field type")


def _decode_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: must be an integer")
    if isinstance(value, str) and len(value.strip()) > _MAX_INT_DIGITS:
        raise InvalidArgument(f"{where}: {value[:20]}... is out of range")
    if (isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())) or (
        isinstance(value, float) and value.is_integer()
    ):
        value = int(value)
    if not isinstance(value, int):
        raise InvalidArgument(f"{where}: must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(f"{where}: {value} is out of range")
    return value


def _decode_enum(enum_cls: Any, value: Any, where: str) -> Any:
    names = enum_names(enum_cls)
    if isinstance(value, str):
        for number, name in names.items():
            if name == value:
                return enum_cls(number)
        raise InvalidArgument(f"{where}: unknown value {value!r}; expected one of {', '.join(names.values())}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in names:
            raise InvalidArgument(f"{where}: unknown value {value}")
        return enum_cls(value)
    raise InvalidArgument(f"{where}: must be an enum name or number")


def _mask_paths(value: Any, where: str) -> list[str]:
    if isinstance(value, dict) and isinstance(value.get("paths"), list):
        raw = value["paths"]
    elif isinstance(value, str):
        raw = value.split(",")
    else:
        raise InvalidArgument(f"{where}: must be a comma-separated string of field paths")
    paths = []
    for p in raw:
        if not isinstance(p, str):
            raise InvalidArgument(f"{where}: paths must be strings")
        p = p.strip()
        if p:
            # proto3 JSON writes mask paths in lowerCamelCase; the contract uses snake_case. Accept both.
            paths.append(".".join(_CAMEL.sub("_", seg).lower() for seg in p.split(".")))
    return paths


@functools.cache
def _fields(cls: type) -> dict[str, FieldDescriptor]:
    return {f.name: f for f in cls.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def from_query(cls: type[M], query: Any) -> M:
    """A request message from URL query parameters (scalars only; repeated keys keep the last value)."""
    data: dict[str, Any] = {}
    fields = _fields(cls)
    for key, value in query.items():
        f = fields.get(key)
        if f is None:
            continue
        data[key] = _flag(key, value) if f.type == FieldDescriptor.TYPE_BOOL else value
    return from_json(cls, data)


def query_flag(query: Any, key: str) -> bool:
    """A bool parameter of a URL query (a multidict), as from_query reads it: the last value counts."""
    values = query.getall(key, ())
    return _flag(key, values[-1]) if values else False


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", ""):
        raise InvalidArgument(f"{key}: must be true or false, got {value!r}")
    return lowered in ("true", "1")
