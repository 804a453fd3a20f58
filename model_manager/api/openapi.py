"""The OpenAPI 3 document of the REST API, made from the route table and the protobuf descriptors.

Schemas follow the JSON the codec writes (json_codec.py): proto field names, enums by name, 64-bit integers as
numbers, a FieldMask as a comma-separated string, unset messages omitted. Nothing is listed as required: the
service, not the document, says what a request lacks, with a 400 that names it.
"""

from __future__ import annotations

import functools
from typing import Any

import betterproto2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from model_manager.api.routes import ROUTES, Route

_FIELD_MASK = "google.protobuf.FieldMask"
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
}
_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "gRPC status code"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {}},
        "error": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}},
        },
        "request_id": {"type": "string", "description": "the request's id, as in the X-Request-Id header"},
    },
}
_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}


def _name(descriptor: Descriptor) -> str:
    full: str = descriptor.full_name
    return full.removeprefix("llmariner.models.server.v1.").replace(".", "")


def _field(f: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.full_name == _FIELD_MASK:
            one: dict[str, Any] = {"type": "string", "description": "comma-separated field paths"}
        else:
            one = {"$ref": f"#/components/schemas/{_add(f.message_type, schemas)}"}
    elif f.type == FieldDescriptor.TYPE_ENUM:
        one = {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    else:
        one = dict(_SCALARS.get(f.type, {"type": "integer"}))
    return {"type": "array", "items": one} if f.is_repeated else one


def _add(descriptor: Descriptor, schemas: dict[str, Any]) -> str:
    name = _name(descriptor)
    if name not in schemas:
        schemas[name] = {}  # placed first, so a message that refers to itself ends the walk
        props = {f.name: _field(f, schemas) for f in descriptor.fields}
        schemas[name] = {"type": "object", "properties": props}
    return name


def _ref(message: type[betterproto2.Message], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{_add(message.DESCRIPTOR, schemas)}"}  # type: ignore[attr-defined]


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name in ("id", "name"):
        if f"{{{name}}}" in route.path:
            schema = {"type": "string", "minLength": 1}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.query is not None:
        for f in route.query.DESCRIPTOR.fields:  # type: ignore[attr-defined]
            if f.name != "id" and f.type != FieldDescriptor.TYPE_MESSAGE and not f.is_repeated:
                params.append({"name": f.name, "in": "query", "required": False, "schema": _field(f, schemas)})
    ok = _ref(route.response, schemas) if route.response is not None else {"type": "object"}
    if route.handler in ("healthz", "readyz"):
        ok = _STATUS
    if route.media == "application/x-ndjson":
        ok = {
            "type": "string",
            "description": f"one JSON document per line: a {route.response.__name__ if route.response else 'value'}, "
            "or, as the last line, an Error that ended the stream",
        }
    elif route.media != "application/json":
        ok = {"type": "string"}
    operation: dict[str, Any] = {
        "operationId": route.handler,
        "summary": route.summary,
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {route.media: {"schema": ok}}},
            "default": {
                "description": "an error: the HTTP status follows its gRPC code",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if route.open:
        operation["security"] = []  # health checks answer without a key, whatever auth.enable says
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body, schemas)}},
        }
    return operation


@functools.cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "model-manager",
            "version": "1",
            "description": "The OpenAI-compatible Models API of model-manager (llmariner's ModelsService over REST).",
        },
        "paths": paths,
        # A key when auth.enable is on; none when it is off (the empty alternative).
        "security": [{"apiKey": []}, {}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key from `model-manager keys create`",
                }
            },
        },
    }
