"""Models in each front's wire form, written straight from their records.

The read paths (get a model, list a page, the worker's listing) skip the betterproto message: building one cost
about 3 µs a model, writing it as JSON through the descriptor walk 4 µs more, and betterproto's protobuf encoder
about 75 µs. Protobuf is `service.convert.proto_model` (upb); JSON is `service.convert.model_fields` with the
values whose JSON differs from their protobuf Python form converted: enums by name, the config as JSON. The
converting function is generated from the Model descriptor once, at import
(`_JSON_SOURCE` shows it): a loop over converters cost as much again as the rest of the encoding.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from model_manager.api.json_codec import enum_names, to_json
from model_manager.proto.llmariner.models.server.v1 import Model, ModelConfig
from model_manager.service import model_config
from model_manager.service.cache import Encoding
from model_manager.service.convert import model_fields, proto_model, proto_page
from model_manager.store.listing import Page
from model_manager.store.records import ModelRecord


class _Names(dict[int, str]):
    """An enum's names by number; a number without a name is written as the number (as the message path does)."""

    def __missing__(self, number: int) -> int:
        return number


@functools.lru_cache(maxsize=1024)
def _config_json(blob: bytes | None) -> dict[str, Any]:
    """Most models share one of a few configs: each is turned into JSON once. Shared, so never changed."""
    return to_json(model_config.decode_shared(blob))


def _check_plain(message: Descriptor, where: str) -> None:
    """A message model_fields gives as a dict must be JSON as it is: no enum or bytes inside, at any depth."""
    for f in message.fields:
        if f.type in (FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_BYTES):
            raise TypeError(f"{where}.{f.name} needs converting for JSON, which wire.py does not do")
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            _check_plain(f.message_type, f"{where}.{f.name}")


def _json_converter() -> tuple[str, dict[str, Any]]:
    """The source of `convert(fields)`, which turns model_fields' dict into the Model's JSON in place, and the
    names it uses: one statement per field whose JSON differs from its value there."""
    names: dict[str, Any] = {"_config_json": _config_json}
    lines = ["def convert(f):"]
    for field in Model.DESCRIPTOR.fields:
        key, kind = repr(field.name), field.type
        if kind == FieldDescriptor.TYPE_ENUM:
            table = f"_{field.name}_names"
            enum_cls = Model._betterproto.cls_by_field[field.name]  # type: ignore[arg-type]
            names[table] = _Names(enum_names(enum_cls))
            value = f"list(map({table}.__getitem__, f[{key}]))" if field.is_repeated else f"{table}[f[{key}]]"
            lines.append(f"    f[{key}] = {value}")
        elif kind == FieldDescriptor.TYPE_MESSAGE and field.message_type is ModelConfig.DESCRIPTOR:
            lines.append(f"    f[{key}] = _config_json(f[{key}])")  # given in its stored encoding
        elif kind == FieldDescriptor.TYPE_MESSAGE:
            _check_plain(field.message_type, f"Model.{field.name}")  # model_fields' dicts are their JSON
        elif kind == FieldDescriptor.TYPE_BYTES:
            raise TypeError(f"Model.{field.name} is bytes, which JSON writes in base64")
    return "\n".join(lines) + "\n", names


_JSON_SOURCE, _JSON_NAMES = _json_converter()
exec(compile(_JSON_SOURCE, "<model JSON converter>", "exec"), _JSON_NAMES)
_convert = _JSON_NAMES["convert"]


def json_model(rec: ModelRecord) -> dict[str, Any]:
    """The REST JSON of a model."""
    fields = model_fields(rec)
    _convert(fields)
    return fields


def _json_page(page: Page) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [json_model(r) for r in page.records],
            "has_more": page.has_more,
            "total_items": page.total,
        }
    )


JSON = Encoding("json", lambda rec: orjson.dumps(json_model(rec)), _json_page)
PROTO = Encoding("proto", lambda rec: proto_model(rec).SerializeToString(), proto_page)
